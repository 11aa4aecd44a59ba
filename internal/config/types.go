package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

// Duration is a time.Duration written as a Go duration string ("30s",
// "1h30m"). Bare numbers are refused: "30" could mean seconds or
// nanoseconds, and a wrong guess is a silent outage.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeNode(n *yaml.Node) error {
	if n.ShortTag() != "!!str" {
		return fmt.Errorf("want a duration such as 30s or 5m, got %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a duration such as 30s or 5m)", truncate(n.Value, 40))
	}
	if v < 0 {
		return errors.New("duration must not be negative")
	}
	*d = Duration(v)
	return nil
}

// URL is an absolute URL.
type URL struct{ *url.URL }

func (u URL) String() string {
	if u.URL == nil {
		return ""
	}
	return u.URL.String()
}

func (u *URL) decodeNode(n *yaml.Node) error {
	if n.ShortTag() != "!!str" {
		return fmt.Errorf("want a URL, got %s", kindName(n))
	}
	p, err := url.Parse(n.Value)
	if err != nil {
		return fmt.Errorf("invalid URL %q", truncate(n.Value, 80))
	}
	if p.Scheme == "" || p.Host == "" {
		return fmt.Errorf("invalid URL %q: want an absolute URL such as http://127.0.0.1:3000", truncate(n.Value, 80))
	}
	u.URL = p
	return nil
}

// Target is an upstream target: a URL, or a mapping {url: URL, weight: N}
// for a share of the traffic other than 1.
type Target struct {
	URL
	// Weight is the target's share relative to the others' (1 to 1000).
	// Default: 1.
	Weight int
}

func (t *Target) acceptsMapping() {}

func (t *Target) decodeNode(n *yaml.Node) error {
	t.Weight = 1
	if n.Kind != yaml.MappingNode {
		return t.URL.decodeNode(n)
	}
	var errs []error
	var haveURL bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "url":
			haveURL = true
			if err := t.URL.decodeNode(v); err != nil {
				errs = append(errs, &keyError{v, "url", err.Error()})
			}
		case "weight":
			w, err := strconv.Atoi(v.Value)
			switch {
			case v.ShortTag() != "!!int" || err != nil:
				errs = append(errs, &keyError{v, "weight", "want an integer, got " + kindName(v)})
			case w < 1 || w > 1000:
				errs = append(errs, &keyError{v, "weight", fmt.Sprintf("%d is out of range 1..1000", w)})
			default:
				t.Weight = w
			}
		default:
			errs = append(errs, &keyError{k, truncate(k.Value, 40), "unknown key (a target has url and weight)"})
		}
	}
	if !haveURL {
		errs = append(errs, &keyError{n, "url", "required"})
	}
	return errors.Join(errs...)
}

// Prefix is a CIDR block; a bare address means just that address.
type Prefix struct{ netip.Prefix }

func (p *Prefix) decodeNode(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if n.ShortTag() != "!!str" && n.ShortTag() != "!!int" {
		return fmt.Errorf("want a CIDR such as 10.0.0.0/8, got %s", kindName(n))
	}
	if strings.Contains(s, "/") {
		v, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("invalid CIDR %q", truncate(s, 60))
		}
		if v != v.Masked() {
			return fmt.Errorf("CIDR %q has host bits set (did you mean %s?)", s, v.Masked())
		}
		p.Prefix = v
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid CIDR %q", truncate(s, 60))
	}
	a = a.Unmap()
	p.Prefix = netip.PrefixFrom(a, a.BitLen())
	return nil
}

// SecretRef is a reference to a secret ("env:NAME", "file:/abs/path", or a
// secret manager URI). Literal secrets are refused.
type SecretRef struct{ secret.Ref }

func (s *SecretRef) decodeNode(n *yaml.Node) error {
	if n.ShortTag() != "!!str" {
		// Do not echo the value: it may be a pasted secret.
		return errors.New("want a secret reference such as env:NAME or file:/abs/path")
	}
	r, err := secret.ParseRef(n.Value)
	if err != nil {
		return err
	}
	s.Ref = r
	return nil
}
