package idp

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// rsaBits is the signing key size. 2048 bits is what every relying party
// accepts and takes well under a second to generate.
const rsaBits = 2048

// signingKey is one RS256 key. It serves as op.SigningKey (private) and,
// through publicKey, as op.Key in the JWKS.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the public half of a signingKey, as published in the JWKS.
type publicKey struct{ k *signingKey }

func (k publicKey) ID() string                         { return k.k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.k.key.PublicKey }

// keyring holds the current signing key and the one before it. Keys live
// in memory only: a restart starts with a new key, which relying parties
// pick up by refetching the JWKS on an unknown kid.
type keyring struct {
	mu       sync.RWMutex
	cur      *signingKey // signs everything; guarded by mu
	previous *signingKey // still published, signs nothing; guarded by mu
}

func newKeyring() (*keyring, error) {
	k, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	return &keyring{cur: k}, nil
}

func newSigningKey() (*signingKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	return &signingKey{id: randomID(12), key: key}, nil
}

// rotate makes a new key current and keeps the old one published.
func (kr *keyring) rotate() error {
	k, err := newSigningKey() // slow: outside the lock
	if err != nil {
		return err
	}
	kr.mu.Lock()
	kr.previous, kr.cur = kr.cur, k
	kr.mu.Unlock()
	return nil
}

func (kr *keyring) current() *signingKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.cur
}

// published returns the keys of the JWKS, current first.
func (kr *keyring) published() []op.Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	keys := []op.Key{publicKey{kr.cur}}
	if kr.previous != nil {
		keys = append(keys, publicKey{kr.previous})
	}
	return keys
}
