package testenv

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxLoginSteps bounds the requests Login makes: redirects and pages together.
const maxLoginSteps = 10

// maxPageBytes bounds how much of one page Login reads.
const maxPageBytes = 1 << 20

// Login drives a browser login without a browser. It GETs authURL with c,
// follows redirects itself, and on the first page that holds a form with a
// password input fills that form: the text or email input named "login" or
// "username" (else the first text or email input) gets username, the first
// password input gets password, hidden inputs and checked checkboxes keep
// their values, as a browser would send them. It submits the form to its
// action (resolved against the page URL) with the form's method, and goes on
// following redirects until a Location starts with redirectPrefix. That URL
// (typically the relying party's callback with code and state) is returned
// without being requested.
//
// c should carry a cookie jar: providers keep the login state in cookies. Its
// CheckRedirect is ignored (Login works on a shallow copy). Login makes at
// most 10 requests; a second password form (a rejected password) is an error.
func Login(ctx context.Context, c *http.Client, authURL string, username, password string, redirectPrefix string) (*url.URL, error) {
	if redirectPrefix == "" {
		return nil, errors.New("login: empty redirect prefix")
	}
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	u, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("login: parsing authorization URL: %w", err)
	}
	method, body := http.MethodGet, url.Values(nil)
	submitted := false
	for step := 0; step < maxLoginSteps; step++ {
		page, resp, err := fetch(ctx, &cc, method, u, body)
		if err != nil {
			return nil, err
		}
		if loc := resp.Header.Get("Location"); isRedirect(resp.StatusCode) && loc != "" {
			next, err := u.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("login: bad Location %q from %s: %w", loc, u.Redacted(), err)
			}
			if strings.HasPrefix(next.String(), redirectPrefix) {
				return next, nil
			}
			u, method, body = next, http.MethodGet, nil
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("login: %s %s: status %d: %s", method, u.Redacted(), resp.StatusCode, snippet(page))
		}
		f, ok := passwordForm(parseForms(page))
		if !ok {
			return nil, fmt.Errorf("login: %s: no password form on the page: %s", u.Redacted(), snippet(page))
		}
		if submitted {
			return nil, fmt.Errorf("login: %s: the password form came back; credentials rejected? %s", u.Redacted(), snippet(page))
		}
		submitted = true
		action, err := u.Parse(f.action)
		if err != nil {
			return nil, fmt.Errorf("login: bad form action %q on %s: %w", f.action, u.Redacted(), err)
		}
		method, body, u = f.method, f.fill(username, password), action
	}
	return nil, fmt.Errorf("login: no redirect to %s after %d requests", redirectPrefix, maxLoginSteps)
}

// fetch makes one request and returns the (bounded) body and the response,
// whose body is already closed.
func fetch(ctx context.Context, c *http.Client, method string, u *url.URL, form url.Values) ([]byte, *http.Response, error) {
	target := *u
	var rd io.Reader
	if method == http.MethodGet && form != nil {
		target.RawQuery = form.Encode()
	} else if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target.String(), rd)
	if err != nil {
		return nil, nil, fmt.Errorf("login: %w", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("login: %s %s: %w", method, target.Redacted(), err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("login: reading %s: %w", target.Redacted(), err)
	}
	return page, resp, nil
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// snippet shortens a page for an error message.
func snippet(page []byte) string {
	s := strings.Join(strings.Fields(string(page)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// htmlForm is what Login needs of a <form>.
type htmlForm struct {
	action string // raw attribute; empty means the page URL
	method string // GET or POST
	inputs []htmlInput
}

type htmlInput struct {
	name, typ, value string
	checked          bool
}

// passwordForm returns the first form with a password input.
func passwordForm(forms []htmlForm) (htmlForm, bool) {
	for _, f := range forms {
		for _, in := range f.inputs {
			if in.typ == "password" {
				return f, true
			}
		}
	}
	return htmlForm{}, false
}

// fill returns the values a browser would submit with username and password
// typed in.
func (f htmlForm) fill(username, password string) url.Values {
	userField := -1
	for i, in := range f.inputs {
		if (in.typ == "text" || in.typ == "email") && (in.name == "login" || in.name == "username") {
			userField = i
			break
		}
	}
	if userField < 0 {
		for i, in := range f.inputs {
			if in.typ == "text" || in.typ == "email" {
				userField = i
				break
			}
		}
	}
	v := url.Values{}
	passwordDone := false
	for i, in := range f.inputs {
		if in.name == "" {
			continue
		}
		switch {
		case i == userField:
			v.Add(in.name, username)
		case in.typ == "password" && !passwordDone:
			v.Add(in.name, password)
			passwordDone = true
		case in.typ == "checkbox" || in.typ == "radio":
			if in.checked {
				val := in.value
				if val == "" {
					val = "on" // HTML's default value for a checkbox
				}
				v.Add(in.name, val)
			}
		case in.typ == "submit" || in.typ == "button" || in.typ == "image" ||
			in.typ == "reset" || in.typ == "file":
			// Not submitted: Login presses no named button.
		default:
			v.Add(in.name, in.value)
		}
	}
	return v
}

// parseForms finds the forms of a page and their inputs. It is a small
// tokenizer, not an HTML5 parser: it knows comments, raw-text elements
// (script, style, textarea, title), quoted and unquoted attributes and
// character references, which is all that login pages need. Inputs outside a
// form and the form= attribute are ignored.
func parseForms(page []byte) []htmlForm {
	s := string(page)
	var forms []htmlForm
	var cur *htmlForm
	for i := 0; i < len(s); {
		lt := strings.IndexByte(s[i:], '<')
		if lt < 0 {
			break
		}
		i += lt
		if strings.HasPrefix(s[i:], "<!--") {
			end := strings.Index(s[i+4:], "-->")
			if end < 0 {
				break
			}
			i += 4 + end + 3
			continue
		}
		name, attrs, closing, next := parseTag(s, i)
		if next <= i {
			i++ // a lone '<' in text
			continue
		}
		i = next
		switch {
		case closing && name == "form":
			if cur != nil {
				forms = append(forms, *cur)
				cur = nil
			}
		case closing:
		case name == "script" || name == "style" || name == "textarea" || name == "title":
			end := strings.Index(strings.ToLower(s[i:]), "</"+name)
			if end < 0 {
				i = len(s)
			} else {
				i += end
			}
		case name == "form":
			if cur != nil { // an unclosed form: HTML ignores a nested <form>
				continue
			}
			method := http.MethodGet
			if strings.EqualFold(attrs["method"], "post") {
				method = http.MethodPost
			}
			cur = &htmlForm{action: attrs["action"], method: method}
		case name == "input" && cur != nil:
			typ := strings.ToLower(attrs["type"])
			if typ == "" {
				typ = "text"
			}
			_, checked := attrs["checked"]
			cur.inputs = append(cur.inputs, htmlInput{name: attrs["name"], typ: typ, value: attrs["value"], checked: checked})
		}
	}
	if cur != nil {
		forms = append(forms, *cur)
	}
	return forms
}

// parseTag reads the tag that starts at s[i] == '<'. It returns the
// lower-case tag name, its attributes (names lower-cased, values unescaped),
// whether it is an end tag, and the index just past '>'. next <= i means s[i]
// does not start a tag.
func parseTag(s string, i int) (name string, attrs map[string]string, closing bool, next int) {
	j := i + 1
	if j < len(s) && s[j] == '/' {
		closing = true
		j++
	}
	start := j
	for j < len(s) && isTagNameByte(s[j]) {
		j++
	}
	if j == start {
		if j < len(s) && (s[j] == '!' || s[j] == '?') { // doctype, processing instruction
			if end := strings.IndexByte(s[j:], '>'); end >= 0 {
				return "", nil, false, j + end + 1
			}
		}
		return "", nil, false, i
	}
	name = strings.ToLower(s[start:j])
	attrs = map[string]string{}
	for j < len(s) {
		for j < len(s) && (isSpace(s[j]) || s[j] == '/') {
			j++
		}
		if j >= len(s) {
			break
		}
		if s[j] == '>' {
			return name, attrs, closing, j + 1
		}
		k := j
		for j < len(s) && !isSpace(s[j]) && s[j] != '=' && s[j] != '>' && s[j] != '/' {
			j++
		}
		key := strings.ToLower(s[k:j])
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		val := ""
		if j < len(s) && s[j] == '=' {
			j++
			for j < len(s) && isSpace(s[j]) {
				j++
			}
			if j < len(s) && (s[j] == '"' || s[j] == '\'') {
				q := s[j]
				end := strings.IndexByte(s[j+1:], q)
				if end < 0 {
					return name, attrs, closing, len(s)
				}
				val = s[j+1 : j+1+end]
				j += end + 2
			} else {
				k := j
				for j < len(s) && !isSpace(s[j]) && s[j] != '>' {
					j++
				}
				val = s[k:j]
			}
		}
		if _, dup := attrs[key]; !dup && key != "" { // HTML keeps the first of duplicates
			attrs[key] = html.UnescapeString(val)
		}
	}
	return name, attrs, closing, len(s)
}

func isTagNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f'
}
