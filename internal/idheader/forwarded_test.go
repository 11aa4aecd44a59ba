package idheader

import (
	"net/netip"
	"strings"
	"testing"
)

// haproxyNet is the trusted proxy network in these tests.
var haproxyNet = netip.MustParsePrefix("10.0.0.0/8")

func trustHAProxy(a netip.Addr) bool { return haproxyNet.Contains(a) }

var (
	haproxy  = netip.MustParseAddr("10.0.0.5")
	client   = netip.MustParseAddr("198.51.100.9")
	attacker = netip.MustParseAddr("203.0.113.66")
)

func TestSpoofedForwardedForFromUntrustedPeerReplaced(t *testing.T) {
	// A client talking to gatehouse directly cannot choose its address.
	xff := []string{"1.1.1.1, 10.0.0.7"}
	if got := ClientIP(attacker, xff, trustHAProxy); got != attacker {
		t.Errorf("ClientIP = %v; want peer %v", got, attacker)
	}
	if got := ForwardedFor(xff, attacker, false); got != attacker.String() {
		t.Errorf("ForwardedFor = %q; want only the peer %q", got, attacker)
	}
}

func TestSpoofedForwardedForPrefixIgnored(t *testing.T) {
	// The client sends "X-Forwarded-For: 1.1.1.1"; HAProxy appends the real
	// address. The walk stops at the first untrusted address from the
	// right, so the forged part never counts, even when it is garbage.
	for name, xff := range map[string][]string{
		"one-line":           {"1.1.1.1, 198.51.100.9"},
		"two-lines":          {"1.1.1.1", "198.51.100.9"},
		"forged-trusted":     {"10.9.9.9, 198.51.100.9"},
		"garbage-prefix":     {"<script>, not-an-ip, 198.51.100.9"},
		"garbage-line":       {"\x00\xff", "198.51.100.9"},
		"with-haproxy-hop":   {"1.1.1.1, 198.51.100.9, 10.0.0.7"},
		"ipv4-mapped":        {"::ffff:198.51.100.9"},
		"with-port":          {"1.1.1.1", "198.51.100.9:51234"},
		"empty-elements":     {"1.1.1.1,, 198.51.100.9 , ", ""},
		"tabs":               {"\t198.51.100.9\t"},
		"bracketed-v4mapped": {"[::ffff:198.51.100.9]:443"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := ClientIP(haproxy, xff, trustHAProxy); got != client {
				t.Errorf("ClientIP(%q) = %v; want %v", xff, got, client)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{name: "no-xff", peer: "10.0.0.5", want: "10.0.0.5"},
		{name: "empty-lines", peer: "10.0.0.5", xff: []string{"", " , "}, want: "10.0.0.5"},
		{name: "all-trusted-leftmost", peer: "10.0.0.5", xff: []string{"10.1.1.1, 10.2.2.2"}, want: "10.1.1.1"},
		{name: "unparsable-rightmost", peer: "10.0.0.5", xff: []string{"198.51.100.9, unknown"}, want: "10.0.0.5"},
		{name: "unparsable-after-trusted", peer: "10.0.0.5", xff: []string{"bogus, 10.0.0.7"}, want: "10.0.0.5"},
		{name: "ipv6", peer: "10.0.0.5", xff: []string{"2001:db8::1"}, want: "2001:db8::1"},
		{name: "ipv6-bracket-port", peer: "10.0.0.5", xff: []string{"[2001:db8::1]:80"}, want: "2001:db8::1"},
		{name: "ipv6-zone-stripped", peer: "10.0.0.5", xff: []string{"fe80::1%eth0"}, want: "fe80::1"},
		{name: "mapped-peer-unmapped", peer: "::ffff:10.0.0.5", xff: []string{"198.51.100.9"}, want: "198.51.100.9"},
		{name: "untrusted-mapped-peer", peer: "::ffff:203.0.113.66", xff: []string{"198.51.100.9"}, want: "203.0.113.66"},
		{name: "zoned-peer", peer: "fe80::1%eth0", want: "fe80::1"},
		{name: "bracketed-ipv4-rejected", peer: "10.0.0.5", xff: []string{"[198.51.100.9]"}, want: "10.0.0.5"},
		{name: "bad-port", peer: "10.0.0.5", xff: []string{"198.51.100.9:99999"}, want: "10.0.0.5"},
		{name: "mapped-with-port-rejected", peer: "10.0.0.5", xff: []string{"::ffff:198.51.100.9:80"}, want: "10.0.0.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClientIP(netip.MustParseAddr(tc.peer), tc.xff, trustHAProxy)
			if got.String() != tc.want {
				t.Errorf("ClientIP(%s, %q) = %v; want %s", tc.peer, tc.xff, got, tc.want)
			}
		})
	}
}

func TestClientIPNilTrustedTrustsNothing(t *testing.T) {
	if got := ClientIP(haproxy, []string{"1.1.1.1"}, nil); got != haproxy {
		t.Errorf("ClientIP with nil trusted = %v; want peer", got)
	}
}

func TestForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prior   []string
		client  netip.Addr
		trusted bool
		want    string
	}{
		{name: "untrusted", prior: []string{"1.1.1.1"}, client: client, want: "198.51.100.9"},
		{name: "trusted-no-prior", client: client, trusted: true, want: "198.51.100.9"},
		{name: "trusted-chain", prior: []string{"1.1.1.1, 2.2.2.2", "3.3.3.3"}, client: client, trusted: true,
			want: "1.1.1.1, 2.2.2.2, 3.3.3.3, 198.51.100.9"},
		{name: "cleaned", prior: []string{" 1.1.1.1 ,,\t2.2.2.2:80 ", "", "[2001:DB8::1]:443"}, client: client, trusted: true,
			want: "1.1.1.1, 2.2.2.2, 2001:db8::1, 198.51.100.9"},
		{name: "header-injection-dropped", prior: []string{"1.1.1.1\r\nX-Forwarded-User: admin", "evil, 2.2.2.2"}, client: client, trusted: true,
			want: "2.2.2.2, 198.51.100.9"},
		{name: "mapped-client", client: netip.MustParseAddr("::ffff:198.51.100.9"), want: "198.51.100.9"},
		{name: "zoned-client", client: netip.MustParseAddr("fe80::1%eth0"), want: "fe80::1"},
		{name: "invalid-client", prior: []string{"1.1.1.1"}, trusted: true, want: "1.1.1.1"},
		{name: "nothing", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ForwardedFor(tc.prior, tc.client, tc.trusted); got != tc.want {
				t.Errorf("ForwardedFor(%q, %v, %v) = %q; want %q", tc.prior, tc.client, tc.trusted, got, tc.want)
			}
		})
	}
}

func TestValidRequestID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"01J9ZK3Q7F6VABCDEF", true},
		{"550e8400-e29b-41d4-a716-446655440000", true},
		{"host:1234.req_5", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a b", false},
		{"a\r\nSet-Cookie: x", false},
		{`a"b`, false},
		{"a,b", false},
		{"a;b", false},
		{"a/b", false},
		{"é", false},
	} {
		if got := ValidRequestID(tc.in); got != tc.want {
			t.Errorf("ValidRequestID(%q) = %v; want %v", tc.in, got, tc.want)
		}
	}
}

func TestClientIPDoesNotAllocate(t *testing.T) {
	xff := []string{"1.1.1.1, 198.51.100.9", "10.0.0.7"}
	allocs := testing.AllocsPerRun(100, func() {
		if got := ClientIP(haproxy, xff, trustHAProxy); got != client {
			t.Fatalf("ClientIP = %v", got)
		}
	})
	if allocs != 0 {
		t.Errorf("ClientIP allocates %v times; want 0", allocs)
	}
}
