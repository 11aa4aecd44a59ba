package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestKeyPEMRoundTrip(t *testing.T) {
	k1, _, _ := keys(t)
	pemBytes, err := MarshalKeyPEM(k1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pemBytes), "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf("PEM does not start with a PKCS #8 block: %.30q", pemBytes)
	}
	got, err := ParseKeyPEM("k1", pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "k1" || !got.Private.Equal(k1.Private) {
		t.Error("round trip changed the key")
	}
}

func TestParseKeyPEMAcceptsSEC1(t *testing.T) {
	k1, _, _ := keys(t)
	der, err := x509.MarshalECPrivateKey(k1.Private)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKeyPEM("k1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Private.Equal(k1.Private) {
		t.Error("SEC 1 parse changed the key")
	}
}

func TestParseKeyPEMRejects(t *testing.T) {
	k1, _, _ := keys(t)
	good, _ := MarshalKeyPEM(k1)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pub, _ := x509.MarshalPKIXPublicKey(&k1.Private.PublicKey)
	for _, tc := range []struct {
		name, id string
		data     []byte
	}{
		{"empty", "k", nil},
		{"not-pem", "k", []byte("hello")},
		{"two-blocks", "k", append(append([]byte{}, good...), good...)},
		{"trailing-junk", "k", append(append([]byte{}, good...), "junk"...)},
		{"p384", "k", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER})},
		{"rsa", "k", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER})},
		{"public-key", "k", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})},
		{"garbage-der", "k", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})},
		{"encrypted", "k", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: p384DER})},
		{"empty-id", "", good},
		{"space-in-id", "a b", good},
		{"long-id", strings.Repeat("k", MaxKeyIDBytes+1), good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseKeyPEM(tc.id, tc.data); err == nil {
				t.Error("ParseKeyPEM succeeded")
			}
		})
	}
}

func TestNewRejectsNonP256Key(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := New(Options{Issuer: testIssuer, Keys: []Key{{ID: "k", Private: p384}}}); err == nil {
		t.Error("New accepted a P-384 key")
	}
	if _, err := MarshalKeyPEM(Key{ID: "k", Private: p384}); err == nil {
		t.Error("MarshalKeyPEM accepted a P-384 key")
	}
}

func TestKeyErrorsDoNotLeakKeyMaterial(t *testing.T) {
	k1, _, _ := keys(t)
	good, _ := MarshalKeyPEM(k1)
	body := strings.Split(string(good), "\n")[1]
	_, err := ParseKeyPEM("k", append(append([]byte{}, good...), good...))
	if err == nil || strings.Contains(err.Error(), body[:16]) {
		t.Errorf("error %v", err)
	}
}
