package config

import (
	"errors"
	"strings"
	"time"
)

func (v *validator) pool(u *Upstream, p string) {
	switch u.Balance {
	case "round_robin", "least_conn", "random_two":
		if u.HashOn != "" {
			v.errorf(p+".hash_on", "hash_on needs balance: hash")
		}
	case "hash":
		if _, _, err := ParseHashOn(u.HashOn); err != nil {
			v.errorf(p+".hash_on", "%v", err)
		}
	default:
		v.errorf(p+".balance", "unknown policy %q (want round_robin, least_conn, random_two or hash)", u.Balance)
	}
	if u.EjectAfter < 0 || u.EjectAfter > 1000 {
		v.errorf(p+".eject_after", "must be between 0 and 1000")
	}
	if u.EjectFor.D() < time.Second {
		v.errorf(p+".eject_for", "must be at least 1s")
	}
	if u.Retries < 0 || u.Retries > 10 {
		v.errorf(p+".retries", "must be between 0 and 10")
	}
	if u.MaxConnsPerTarget < 0 {
		v.errorf(p+".max_conns_per_target", "must not be negative")
	}
	if u.MaxQueue < 0 {
		v.errorf(p+".max_queue", "must not be negative")
	}
	if u.MaxQueue > 0 && u.MaxConnsPerTarget == 0 {
		v.errorf(p+".max_queue", "a queue needs max_conns_per_target")
	}
	if tc := u.TLS; tc != nil {
		if (tc.ClientCertFile == "") != tc.ClientKey.IsZero() {
			v.errorf(p+".tls.client_cert_file", "client_cert_file and client_key go together")
		}
		hasHTTPS := false
		for _, t := range u.Targets {
			hasHTTPS = hasHTTPS || (t.URL.URL != nil && t.Scheme == "https")
		}
		if !hasHTTPS {
			v.errorf(p+".tls", "tls applies to https targets, and this upstream has none")
		}
	}
	if h := u.HealthCheck; h != nil {
		hp := p + ".health_check"
		if !strings.HasPrefix(h.Path, "/") {
			v.errorf(hp+".path", "want an absolute path such as /api/health")
		}
		if h.Status < 100 || h.Status > 599 {
			v.errorf(hp+".status", "want an HTTP status between 100 and 599")
		}
		if h.Interval.D() < 100*time.Millisecond {
			v.errorf(hp+".interval", "must be at least 100ms")
		}
		if h.Timeout <= 0 || h.Timeout > h.Interval {
			v.errorf(hp+".timeout", "must be greater than 0 and at most interval")
		}
		if h.Rise < 1 || h.Rise > 100 {
			v.errorf(hp+".rise", "must be between 1 and 100")
		}
		if h.Fall < 1 || h.Fall > 100 {
			v.errorf(hp+".fall", "must be between 1 and 100")
		}
		if !tokenRE.MatchString(h.Method) || strings.ToUpper(h.Method) != h.Method {
			v.errorf(hp+".method", "invalid method %q", h.Method)
		}
	}
}

// ParseHashOn splits hash_on into its source (cookie, header or
// client_ip) and name.
func ParseHashOn(s string) (source, name string, err error) {
	if s == "client_ip" {
		return s, "", nil
	}
	source, name, ok := strings.Cut(s, ":")
	if !ok || (source != "cookie" && source != "header") || name == "" || !tokenRE.MatchString(name) {
		return "", "", errHashOn
	}
	return source, name, nil
}

var errHashOn = errors.New("want cookie:NAME, header:NAME or client_ip")
