package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/testenv"
)

// runLogin signs the bench user in at a relying party the way a browser
// would: GET -start (oauth2-proxy's /oauth2/start), follow the redirects to
// the provider and fill its password form (testenv.Login), then GET the
// relying party's callback with the same cookie jar. It prints the session
// cookies the callback set, as a Cookie header value. The relying party may
// split a large session into NAME_0, NAME_1, ... (oauth2-proxy does past 4
// KB), so every cookie named NAME or NAME_<n> is printed, in order.
func runLogin(args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	start := fs.String("start", "", "the URL that starts the login (required)")
	prefix := fs.String("callback-prefix", "", "the relying party's callback URL, without query (required)")
	name := fs.String("cookie-name", "_oauth2_proxy", "the session cookie's name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *start == "" || *prefix == "" {
		return errors.New("-start and -callback-prefix are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	c := &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	callback, err := testenv.Login(ctx, c, *start, benchEmail, benchPassword, *prefix) // Dex logs in by email
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, callback.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("callback answered %d, want a redirect: %.200s", resp.StatusCode, body)
	}
	u, err := url.Parse(*start)
	if err != nil {
		return err
	}
	split := regexp.MustCompile("^" + regexp.QuoteMeta(*name) + `(_[0-9]+)?$`)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		if split.MatchString(ck.Name) {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
	}
	if len(parts) == 0 {
		return fmt.Errorf("the callback set no %s cookie", *name)
	}
	fmt.Println(strings.Join(parts, "; "))
	return nil
}
