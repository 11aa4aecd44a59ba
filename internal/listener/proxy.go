package listener

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// ProxyMode says whether a listener accepts PROXY protocol headers.
type ProxyMode int

const (
	// ProxyOff never reads a PROXY header: one is just bad HTTP.
	ProxyOff ProxyMode = iota
	// ProxyOptional lets trusted peers send a header and serves them without
	// one too; a header from any other peer closes the connection.
	ProxyOptional
	// ProxyRequired serves only trusted peers, and only with a header.
	ProxyRequired
)

// ParseProxyMode maps the configuration's off/optional/required.
func ParseProxyMode(s string) (ProxyMode, error) {
	switch s {
	case "", "off":
		return ProxyOff, nil
	case "optional":
		return ProxyOptional, nil
	case "required":
		return ProxyRequired, nil
	}
	return 0, fmt.Errorf("unknown proxy_protocol %q", s)
}

// Trust is a set of trusted proxy networks.
type Trust []netip.Prefix

// Contains reports whether a is in one of the networks.
func (t Trust) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// WrapProxy wraps ln so PROXY headers are handled as mode says; ProxyOff
// returns ln unchanged. headerTimeout bounds the wait for a header.
func WrapProxy(ln net.Listener, mode ProxyMode, trust Trust, headerTimeout time.Duration) net.Listener {
	if mode == ProxyOff {
		return ln
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: headerTimeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			peer := addrOf(o.Upstream)
			if trust.Contains(peer) {
				if mode == ProxyRequired {
					return proxyproto.REQUIRE, nil
				}
				return proxyproto.USE, nil
			}
			if mode == ProxyRequired {
				return proxyproto.REJECT, fmt.Errorf("peer %s is not a trusted proxy: %w", peer, proxyproto.ErrInvalidUpstream)
			}
			return proxyproto.REJECT, nil
		},
	}
}

// Conn is what the proxy knows about the connection a request came on.
type Conn struct {
	// Peer is the address of the socket's other end (HAProxy, when it sends
	// PROXY headers).
	Peer netip.Addr
	// Client is the client's address: the PROXY header's source when one
	// was accepted, otherwise Peer.
	Client netip.Addr
	// Proxied reports that Client came from a PROXY header.
	Proxied bool
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it remembers the raw
// connection so ConnOf can tell the socket peer from the PROXY client. It
// must not read from the connection (it runs on the accept loop).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// ConnOf returns the connection facts for r. It allocates nothing.
func ConnOf(r *http.Request) Conn {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		peer := addrOf(pc.Raw().RemoteAddr())
		if h := pc.ProxyHeader(); h != nil && !h.Command.IsLocal() {
			if client := addrOf(h.SourceAddr); client.IsValid() {
				return Conn{Peer: peer, Client: client, Proxied: true}
			}
		}
		return Conn{Peer: peer, Client: peer}
	}
	var a netip.Addr
	if c != nil {
		a = addrOf(c.RemoteAddr())
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a = ap.Addr().Unmap()
	}
	return Conn{Peer: a, Client: a}
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap().WithZone("")
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}
