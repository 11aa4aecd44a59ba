package idheader

import (
	"net/netip"
	"strings"
	"testing"
)

// refElements is a plain reference for the X-Forwarded-For element parser.
func refElements(lines []string) (elems []string) {
	for _, l := range lines {
		for _, e := range strings.Split(l, ",") {
			if e = strings.Trim(e, " \t"); e != "" {
				elems = append(elems, e)
			}
		}
	}
	return elems
}

// refParse is a plain reference for parseElement built on net/netip.
func refParse(e string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(e); err == nil {
		return a.WithZone("").Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(e); err == nil {
		a := ap.Addr()
		// ParseAddrPort allows "1.2.3.4:0" but also zones and 4in6; accept
		// the forms parseElement documents.
		if a.Is4() || strings.HasPrefix(e, "[") {
			return a.WithZone("").Unmap(), true
		}
	}
	if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		if a, err := netip.ParseAddr(e[1 : len(e)-1]); err == nil && a.Is6() {
			return a.WithZone("").Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// refClientIP is a plain reference for ClientIP.
func refClientIP(peer netip.Addr, xff []string, trusted func(netip.Addr) bool) netip.Addr {
	peer = peer.WithZone("").Unmap()
	if !peer.IsValid() || !trusted(peer) {
		return peer
	}
	elems := refElements(xff)
	var last netip.Addr
	for i := len(elems) - 1; i >= 0; i-- {
		a, ok := refParse(elems[i])
		if !ok {
			return peer
		}
		if !trusted(a) {
			return a
		}
		last = a
	}
	if last.IsValid() {
		return last
	}
	return peer
}

func FuzzClientIP(f *testing.F) {
	for _, s := range []string{
		"", "1.1.1.1", "1.1.1.1, 198.51.100.9", "10.0.0.1,10.0.0.2", " , ,",
		"[::1]:80", "1.2.3.4:5678", "::ffff:1.2.3.4", "fe80::1%eth0", "unknown, 10.0.0.9",
		"[1.2.3.4]", "[::1", "1.2.3.4:", "1.2.3.4:99999", "::ffff:1.2.3.4:80",
		"1.2.3.4:000080", "[::1]:000443", "[fe80::1%eth0]:80", "[::ffff:1.2.3.4]", "1.2.3.4:+8",
		"1.2.3.4:0", "[::1]x", "1.2.3.4]:80", "1.2.3.4:65536",
	} {
		f.Add(s, "10.0.0.9", "10.0.0.5")
	}
	f.Fuzz(func(t *testing.T, line1, line2, peerStr string) {
		xff := []string{line1, line2}
		peer, _ := netip.ParseAddr(peerStr)
		got := ClientIP(peer, xff, trustHAProxy)
		if want := refClientIP(peer, xff, trustHAProxy); got != want {
			t.Fatalf("ClientIP(%v, %q) = %v; reference gives %v", peer, xff, got, want)
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("ClientIP(%v, %q) = %v is not normalized", peer, xff, got)
		}

		// ForwardedFor writes exactly the parsable elements, normalized,
		// then the client, separated by ", ".
		out := ForwardedFor(xff, client, true)
		var want []string
		for _, e := range refElements(xff) {
			if a, ok := refParse(e); ok {
				want = append(want, a.String())
			}
		}
		want = append(want, client.String())
		if out != strings.Join(want, ", ") {
			t.Fatalf("ForwardedFor(%q) = %q; want %q", xff, out, strings.Join(want, ", "))
		}
		if strings.ContainsAny(out, "\r\n\x00[]%") {
			t.Fatalf("ForwardedFor(%q) = %q contains unsafe bytes", xff, out)
		}
	})
}

func FuzzStrip(f *testing.F) {
	for _, s := range []string{"X-Forwarded-User", "x_gatehouse_", "X-Gatehousex", "Forwarded", "X-Forwarded-For"} {
		f.Add(s)
	}
	s, err := NewStripper(Options{Names: []string{"X-Custom-Email"}})
	if err != nil {
		f.Fatal(err)
	}
	all := append(append([]string{"x-custom-email"}, identityNames...), identityPrefixes...)
	f.Fuzz(func(t *testing.T, k string) {
		// Reference: fold with strings functions and compare.
		folded := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		want := false
		for _, n := range all {
			if folded == n || (strings.HasSuffix(n, "-") && strings.HasPrefix(folded, n)) {
				want = true
			}
		}
		// strings.ToLower maps some non-ASCII runes to ASCII (the Kelvin
		// sign to "k"); header names are ASCII, so only compare those.
		for i := 0; i < len(k); i++ {
			if k[i] >= 0x80 {
				return
			}
		}
		h := map[string][]string{k: {"v"}}
		if got := s.Strip(h) == 1; got != want {
			t.Fatalf("Strip removed %q: %v; want %v", k, got, want)
		}
	})
}
