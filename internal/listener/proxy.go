package listener

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
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
			peer := AddrOf(o.Upstream)
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
	// TLS is what the PROXY header says of the client's TLS connection to
	// the front end (HAProxy's ssl TLV, with send-proxy-v2
	// proxy-v2-options ssl,...); nil when the client did not use TLS, or
	// the header does not say.
	TLS *ProxiedTLS
}

// ProxiedTLS describes the TLS connection between the client and the front
// end that terminated it, from PROXY v2 TLVs.
type ProxiedTLS struct {
	// Version and Cipher are the ssl TLV's sub-TLVs, such as TLSv1.3 and
	// TLS_AES_256_GCM_SHA384.
	Version, Cipher string
	// SNI is the server name the client asked for (the AUTHORITY TLV).
	SNI string
	// ALPN is the negotiated protocol, such as h2 (the ALPN TLV).
	ALPN string
}

type connKey struct{}

// connInfo is what ConnContext keeps for a connection; the PROXY header's
// TLVs are parsed once, at the first ConnOf (after the header was read).
type connInfo struct {
	c    net.Conn
	once sync.Once
	tls  *ProxiedTLS
}

// ConnContext is for http.Server.ConnContext: it remembers the raw
// connection so ConnOf can tell the socket peer from the PROXY client. It
// must not read from the connection (it runs on the accept loop).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connInfo{c: c})
}

// ConnOf returns the connection facts for r. It allocates nothing.
func ConnOf(r *http.Request) Conn {
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	var c net.Conn
	if ci != nil {
		c = ci.c
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		peer := AddrOf(pc.Raw().RemoteAddr())
		if h := pc.ProxyHeader(); h != nil && !h.Command.IsLocal() {
			if client := AddrOf(h.SourceAddr); client.IsValid() {
				ci.once.Do(func() { ci.tls = proxiedTLS(h) })
				return Conn{Peer: peer, Client: client, Proxied: true, TLS: ci.tls}
			}
		}
		return Conn{Peer: peer, Client: peer}
	}
	var a netip.Addr
	if c != nil {
		a = AddrOf(c.RemoteAddr())
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a = ap.Addr().Unmap()
	}
	return Conn{Peer: a, Client: a}
}

// proxiedTLS reads the TLS facts of a PROXY v2 header, or nil.
func proxiedTLS(h *proxyproto.Header) *ProxiedTLS {
	tlvs, err := h.TLVs()
	if err != nil {
		return nil
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok || !ssl.ClientSSL() {
		return nil
	}
	t := &ProxiedTLS{}
	t.Version, _ = ssl.SSLVersion()
	t.Cipher, _ = ssl.SSLCipher()
	for _, tlv := range tlvs {
		switch tlv.Type {
		case proxyproto.PP2_TYPE_AUTHORITY:
			t.SNI = printable(tlv.Value, 253)
		case proxyproto.PP2_TYPE_ALPN:
			t.ALPN = printable(tlv.Value, 32)
		}
	}
	return t
}

// printable returns b as a string when it is short printable ASCII, else "".
func printable(b []byte, max int) string {
	if len(b) > max {
		return ""
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return ""
		}
	}
	return string(b)
}

// AddrOf returns the IP address of a, unmapped and without zone; the
// zero Addr when a has none.
func AddrOf(a net.Addr) netip.Addr {
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
