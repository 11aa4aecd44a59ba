package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signRawRS256 signs an arbitrary header and payload (JSON text, not
// re-encoded) with RS256, for headers go-jose's signer would not produce.
func signRawRS256(t testing.TB, key jose.JSONWebKey, headerJSON, payloadJSON string) string {
	t.Helper()
	input := enc(headerJSON) + "." + enc(payloadJSON)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key.Key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestAlgNoneRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	payload := enc(mustJSON(t, baseClaims(c)))
	for _, tc := range []struct {
		name   string
		header string
		sig    string
		want   error
	}{
		{"none, empty signature", `{"alg":"none","typ":"at+jwt"}`, "", ErrMalformed},
		{"none, junk signature", `{"alg":"none","typ":"at+jwt"}`, "AAAA", ErrAlgorithm},
		{"None", `{"alg":"None","kid":"rsa-1"}`, "AAAA", ErrAlgorithm},
		{"NONE", `{"alg":"NONE","kid":"rsa-1"}`, "AAAA", ErrAlgorithm},
		{"no alg", `{"kid":"rsa-1"}`, "AAAA", ErrMalformed},
		{"empty alg", `{"alg":"","kid":"rsa-1"}`, "AAAA", ErrMalformed},
		{"alg not a string", `{"alg":["RS256"],"kid":"rsa-1"}`, "AAAA", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, v, enc(tc.header)+"."+payload+"."+tc.sig, tc.want)
		})
	}
	if n := p.fetches.Load(); n != 0 {
		t.Errorf("refused tokens caused %d JWKS fetches, want 0", n)
	}
}

func TestHS256WithRSAPublicKeyRejected(t *testing.T) {
	// The classic key-confusion attack: MAC the token with HS256, using the
	// issuer's public RSA key (which anyone can fetch) as the secret.
	k := keysOnce()
	c := newClock()
	pub := &k.rsa1.Key.(*rsa.PrivateKey).PublicKey
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"PKIX DER":       der,
		"PEM":            pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"PKCS1 DER":      x509.MarshalPKCS1PublicKey(pub),
		"modulus":        pub.N.Bytes(),
		"JWK JSON":       []byte(mustJSON(t, public(k.rsa1))),
		"JWKS oct entry": []byte("the-oct-secret-published-in-the-jwks-long-enough-for-hs512-0123456789abcdef"),
	}
	// The JWKS also publishes an oct key under the RSA key's kid and its own:
	// neither may ever become an HMAC key.
	set := map[string]any{"keys": []any{
		public(k.rsa1),
		map[string]any{"kty": "oct", "kid": "rsa-1", "alg": "HS256", "k": enc("the-oct-secret-published-in-the-jwks-long-enough-for-hs512-0123456789abcdef")},
		map[string]any{"kty": "oct", "kid": "hmac", "k": enc("the-oct-secret-published-in-the-jwks-long-enough-for-hs512-0123456789abcdef")},
	}}
	p := newIDP(t)
	p.setBody(http.StatusOK, []byte(mustJSON(t, set)))
	v := newVerifier(t, p, c, func(o *Options) { o.Issuers[0].Algorithms = []string{"RS256", "PS256", "ES256"} })
	mustVerify(t, v, signAT(t, k.rsa1, baseClaims(c)))

	for name, secret := range secrets {
		for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512} {
			for _, kid := range []string{"rsa-1", "hmac"} {
				t.Run(name+"/"+string(alg)+"/"+kid, func(t *testing.T) {
					forged := sign(t, jose.JSONWebKey{Key: secret, KeyID: kid}, baseClaims(c), signOpts{alg: alg, typ: "at+jwt"})
					mustFail(t, v, forged, ErrAlgorithm)
				})
			}
		}
	}
	m := v.issuers[testIss].keys.cur.Load()
	if len(m.all) != 1 {
		t.Errorf("key set holds %d keys, want only the RSA key", len(m.all))
	}
	for _, key := range m.all {
		if _, ok := key.pub.([]byte); ok {
			t.Errorf("key %q is a []byte: an oct JWK became an HMAC key", key.kid)
		}
	}
}

func TestSymmetricAlgorithmsRefusedAtConstruction(t *testing.T) {
	for _, alg := range []string{"HS256", "HS384", "HS512", "hs256", "none", "None"} {
		_, err := New(Options{Issuers: []Issuer{{Issuer: testIss, JWKSURL: "https://idp.example.test/jwks", Audiences: []string{testAud}, Algorithms: []string{"RS256", alg}}}})
		if err == nil {
			t.Errorf("New accepted algorithm %q", alg)
		}
	}
}

func TestGatehouseAssertionAsBearerRejected(t *testing.T) {
	// gatehouse's own upstream assertion, replayed at gatehouse as a bearer
	// token: refused by iss even if its keys were in a trusted JWKS.
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1, k.ec1)
	v := newVerifier(t, p, c)
	assertion := with(baseClaims(c), "iss", "https://gatehouse.example.test")
	for _, typ := range []string{"", "JWT", "at+jwt", "gatehouse-assertion+jwt"} {
		t.Run("typ "+typ, func(t *testing.T) {
			mustFail(t, v, sign(t, k.ec1, assertion, signOpts{typ: typ}), ErrTokenType)
		})
	}
	if n := p.fetches.Load(); n != 0 {
		t.Errorf("the assertion caused %d JWKS fetches, want 0", n)
	}
}

func TestIDTokenAsAccessTokenRejected(t *testing.T) {
	// An ID token from the same issuer, with the same audience (an IdP that
	// uses one client for both), presented as a bearer token.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	idToken := with(baseClaims(c), "nonce", "n-0S6_WzA2Mj", "at_hash", "77QmUPtjPfzWtF2AnpK9RQ", "azp", testAud, "auth_time", c.Now().Unix())
	for _, tc := range []struct {
		name   string
		typ    string
		claims map[string]any
	}{
		{"full ID token, typ JWT", "JWT", idToken},
		{"full ID token, no typ", "", idToken},
		{"nonce only", "", with(baseClaims(c), "nonce", "n")},
		{"at_hash only", "JWT", with(baseClaims(c), "at_hash", "h")},
		{"c_hash only", "", with(baseClaims(c), "c_hash", "h")},
		{"typ id_token+jwt", "id_token+jwt", baseClaims(c)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, v, sign(t, k.rsa1, tc.claims, signOpts{typ: tc.typ}), ErrTokenType)
		})
	}
}

func TestLogoutTokenAsAccessTokenRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	logout := with(baseClaims(c), "sid", "08a5019c",
		"events", map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}})
	for _, typ := range []string{"logout+jwt", "application/logout+jwt", "JWT", "", "at+jwt"} {
		t.Run("typ "+typ, func(t *testing.T) {
			mustFail(t, v, sign(t, k.rsa1, logout, signOpts{typ: typ}), ErrTokenType)
		})
	}
	// logout+jwt without events is refused by typ alone.
	mustFail(t, v, sign(t, k.rsa1, baseClaims(c), signOpts{typ: "logout+jwt"}), ErrTokenType)
}

func TestEmbeddedJWKHeaderIgnoredAndRejected(t *testing.T) {
	// The attacker signs with their own key and embeds its public half as
	// jwk, naming the real kid. The token is refused outright; the embedded
	// key is never used.
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	forged := sign(t, k.attacker, baseClaims(c), signOpts{typ: "at+jwt", embed: true, headers: map[jose.HeaderKey]any{"kid": "rsa-1"}})
	mustFail(t, v, forged, ErrHeader)
	// Without the jwk header, the same forgery meets the real key.
	mustFail(t, v, signAT(t, k.attacker, baseClaims(c)), ErrSignature)
}

func TestKeyURLHeadersNeverFetched(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	attacker := newIDP(t, k.attacker)
	for _, h := range []jose.HeaderKey{"jku", "x5u"} {
		t.Run(string(h), func(t *testing.T) {
			forged := sign(t, k.attacker, baseClaims(c), signOpts{typ: "at+jwt", headers: map[jose.HeaderKey]any{h: attacker.url()}})
			mustFail(t, v, forged, ErrHeader)
		})
	}
	if n := attacker.fetches.Load(); n != 0 {
		t.Errorf("the attacker's key URL was fetched %d times", n)
	}
	if n := p.fetches.Load(); n != 0 {
		t.Errorf("the issuer's JWKS was fetched %d times for refused tokens", n)
	}
}

func TestX5CHeaderRejected(t *testing.T) {
	// A self-signed certificate for the attacker's key, in x5c.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	priv := k.attacker.Key.(*rsa.PrivateKey)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp.example.test"}, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	forged := sign(t, k.attacker, baseClaims(c), signOpts{typ: "at+jwt", headers: map[jose.HeaderKey]any{"x5c": []string{base64.StdEncoding.EncodeToString(der)}}})
	mustFail(t, v, forged, ErrHeader)
}

func TestForbiddenHeadersRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	for _, tc := range []struct {
		name    string
		headers map[jose.HeaderKey]any
	}{
		{"crit exp", map[jose.HeaderKey]any{"crit": []string{"exp"}, "exp": 1}},
		{"crit b64", map[jose.HeaderKey]any{"crit": []string{"b64"}, "b64": true}},
		{"crit empty", map[jose.HeaderKey]any{"crit": []string{}}},
		{"b64 without crit", map[jose.HeaderKey]any{"b64": true}},
		{"enc", map[jose.HeaderKey]any{"enc": "A256GCM"}},
		{"zip", map[jose.HeaderKey]any{"zip": "DEF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, v, sign(t, k.rsa1, baseClaims(c), signOpts{typ: "at+jwt", headers: tc.headers}), ErrHeader)
		})
	}
}

func TestJWSJSONSerializationRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.rsa1}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign([]byte(mustJSON(t, baseClaims(c))))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, compact)
	parts := strings.Split(compact, ".")
	flattened := mustJSON(t, map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
	for name, tok := range map[string]string{
		"general JSON":         obj.FullSerialize(),
		"flattened JSON":       flattened,
		"leading space":        " " + compact,
		"trailing newline":     compact + "\n",
		"Bearer prefix":        "Bearer " + compact,
		"padded segment":       parts[0] + "=." + parts[1] + "." + parts[2],
		"standard base64 char": strings.Replace(compact, "-", "+", 1) + "+/",
		"four parts":           compact + ".AAAA",
		"detached payload":     parts[0] + ".." + parts[2],
	} {
		t.Run(name, func(t *testing.T) { mustFail(t, v, tok, ErrMalformed) })
	}
}

func TestJWEInPlaceOfJWSRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	e, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: public(k.rsa1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Encrypt([]byte(mustJSON(t, baseClaims(c))))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	mustFail(t, v, tok, ErrMalformed)
}

func TestDuplicateClaimKeysRejected(t *testing.T) {
	// encoding/json would keep the last "sub"; go-jose's decoder refuses.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	payload := mustJSON(t, baseClaims(c))
	for name, p := range map[string]string{
		"sub twice":            strings.Replace(payload, `"sub":"alice"`, `"sub":"alice","sub":"admin"`, 1),
		"sub via escape":       strings.Replace(payload, `"sub":"alice"`, `"sub":"alice","s\u0075b":"admin"`, 1),
		"groups twice":         strings.Replace(payload, `"groups":`, `"groups":["admins"],"groups":`, 1),
		"iss twice":            strings.Replace(payload, `"iss":`, `"iss":"https://evil.example.test","iss":`, 1),
		"nested duplicate":     strings.Replace(payload, `{`, `{"ext":{"a":1,"a":2},`, 1),
		"exp twice (far, now)": strings.Replace(payload, `"exp":`, `"exp":9999999999,"exp":`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if p == payload {
				t.Fatal("test payload unchanged")
			}
			mustFail(t, v, signAT(t, k.rsa1, p), ErrMalformed)
		})
	}
	t.Run("header kid twice", func(t *testing.T) {
		mustFail(t, v, signRawRS256(t, k.rsa1, `{"alg":"RS256","kid":"rsa-1","kid":"rsa-2","typ":"at+jwt"}`, payload), ErrMalformed)
	})
	t.Run("header alg twice", func(t *testing.T) {
		mustFail(t, v, signRawRS256(t, k.rsa1, `{"alg":"none","alg":"RS256","kid":"rsa-1"}`, payload), ErrMalformed)
	})
	t.Run("control: hand-built token verifies", func(t *testing.T) {
		mustVerify(t, v, signRawRS256(t, k.rsa1, `{"alg":"RS256","kid":"rsa-1","typ":"at+jwt"}`, payload))
	})
}

func TestECDSAZeroSignatureRejected(t *testing.T) {
	// r = s = 0 verifies against any message under some broken ECDSA
	// implementations (CVE-2022-21449).
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.ec1), c)
	input := enc(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`) + "." + enc(mustJSON(t, baseClaims(c)))
	for name, sig := range map[string][]byte{
		"zero r and s": make([]byte, 64),
		"short":        make([]byte, 63),
		"DER length":   make([]byte, 72),
	} {
		t.Run(name, func(t *testing.T) {
			mustFail(t, v, input+"."+base64.RawURLEncoding.EncodeToString(sig), ErrSignature)
		})
	}
}

func TestLongKIDRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	key := k.rsa1
	key.KeyID = strings.Repeat("k", MaxKIDBytes+1)
	mustFail(t, v, signAT(t, key, baseClaims(c)), ErrHeader)
	if n := p.fetches.Load(); n != 0 {
		t.Errorf("fetches = %d, want 0", n)
	}
	key.KeyID = strings.Repeat("k", MaxKIDBytes)
	mustFail(t, v, signAT(t, key, baseClaims(c)), ErrUnknownKey)
}

func TestOversizedTokenRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	big := signAT(t, k.rsa1, with(baseClaims(c), "pad", strings.Repeat("x", DefaultMaxTokenBytes)))
	mustFail(t, v, big, ErrTooLarge)
	mustFail(t, v, strings.Repeat("A", 1<<20), ErrTooLarge)
	if n := p.fetches.Load(); n != 0 {
		t.Errorf("fetches = %d, want 0", n)
	}
	v2 := newVerifier(t, p, c, func(o *Options) { o.MaxTokenBytes = 64 << 10 })
	mustVerify(t, v2, big)
}

func TestNonCanonicalBase64Rejected(t *testing.T) {
	// go-jose ignores non-zero trailing bits, so one token would have several
	// spellings; the pre-check allows only the canonical one.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	tok := signAT(t, k.rsa1, baseClaims(c))
	mustVerify(t, v, tok)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	if len(tok[strings.LastIndexByte(tok, '.')+1:])%4 != 2 {
		t.Fatal("RS256 signature segment length changed; adjust the test")
	}
	malleated := tok[:len(tok)-1] + string(alphabet[last|1])
	mustFail(t, v, malleated, ErrMalformed)

	parts := strings.Split(tok, ".")
	mustFail(t, v, parts[0]+"."+parts[1]+"A."+parts[2], ErrMalformed) // impossible length
}

func TestErrorsNeverContainToken(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	const m = "SECRETMARKER"
	cl := baseClaims(c)
	marked := func(kv ...any) map[string]any { return with(cl, kv...) }
	markedKey := k.rsa1
	markedKey.KeyID = m + "kid"
	payload := mustJSON(t, cl)
	toks := []string{
		signAT(t, k.rsa1, marked("iss", m+"iss")),
		signAT(t, k.rsa1, marked("aud", m+"aud")),
		signAT(t, k.rsa1, marked("exp", c.Now().Add(-time.Hour).Unix(), "sub", m+"sub")),
		signAT(t, markedKey, cl),
		sign(t, k.rsa1, cl, signOpts{typ: m + "typ"}),
		sign(t, k.rsa1, marked("nonce", m+"nonce"), signOpts{}),
		signAT(t, k.rsa1, marked("email", 5, "sub", m+"sub")),
		signAT(t, k.rsa1, strings.Replace(payload, `"sub":"alice"`, `"sub":"alice","`+m+`dup":1,"`+m+`dup":2`, 1)),
		signRawRS256(t, k.rsa1, `{"alg":"RS256","kid":["`+m+`"]}`, payload),
		signRawRS256(t, k.rsa1, `{"alg":"`+m+`alg","kid":"rsa-1"}`, payload),
		signRawRS256(t, k.rsa1, `{"alg":"RS256","kid":"rsa-1","jku":"https://`+m+`"}`, payload),
		signAT(t, k.attacker, marked("sub", m+"sub")),
		signAT(t, k.rsa1, `{"sub":"`+m+`"`),
		enc(`{"alg":"RS256","kid":"`+m+`"`) + "." + enc(payload) + ".AAAA",
	}
	for i, tok := range toks {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Errorf("token %d verified", i)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, m) {
			t.Errorf("token %d: error %q repeats a value from the token", i, msg)
		}
		for _, seg := range strings.Split(tok, ".") {
			if len(seg) >= 8 && strings.Contains(msg, seg) {
				t.Errorf("token %d: error %q contains a token segment", i, msg)
			}
		}
		if Reason(err) == ReasonInvalid {
			t.Errorf("token %d: error %q wraps no sentinel", i, msg)
		}
	}
}

func mustEC384() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}
