// Command floor is the smallest reverse proxy gatehouse's design allows: a
// net/http server whose only handler is an httputil.ReverseProxy with a
// Rewrite function (SetURL and SetXForwarded) and gatehouse's pool of copy
// buffers in front of one target, with gatehouse's default server limits and no
// routing, no header hygiene, no audit record, no metrics and no identity.
// bench/run.sh measures it next to gatehouse and HAProxy, so that the table
// shows what the mandated architecture costs by itself, before gatehouse
// adds anything.
//
//	floor -addr HOST:PORT -target URL [-transport std|gatehouse]
//
// -transport std is net/http's Transport, tuned for a keep-alive pool of
// 512 connections; -transport gatehouse is gatehouse's own upstream
// (internal/upstream, its HTTP/1.1 transport), as gatehouse uses it.
//
// It is a bench tool, not part of gatehouse, and listens on loopback only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/proxy"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18090", "loopback address to listen on")
	target := flag.String("target", "", "the app's base URL, http://host:port")
	transport := flag.String("transport", "gatehouse", "std (net/http's Transport) or gatehouse (internal/upstream)")
	flag.Parse()
	if err := run(*addr, *target, *transport); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(addr, target, transport string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: not a loopback address", addr)
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-target %q: want http://host:port", target)
	}
	var rt http.RoundTripper
	switch transport {
	case "std":
		rt = &http.Transport{
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		}
	case "gatehouse":
		up, err := upstream.New(upstream.Options{Name: "floor", Targets: []*url.URL{u}})
		if err != nil {
			return err
		}
		defer up.Close()
		rt = up
	default:
		return fmt.Errorf("-transport %q: want std or gatehouse", transport)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.SetXForwarded()
		},
		Transport:  rt,
		BufferPool: &proxy.BufferPool{},
	}
	limits := config.Default().Server
	srv := &http.Server{
		Addr:              addr,
		Handler:           rp,
		ReadHeaderTimeout: limits.ReadHeaderTimeout.D(),
		IdleTimeout:       limits.IdleTimeout.D(),
		WriteTimeout:      limits.WriteTimeout.D(),
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ErrorLog:          log.New(os.Stderr, "floor: ", 0),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
