package assertion

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// MaxKeyIDBytes bounds Key.ID. A kid travels in every assertion header and is
// only ever a map key for verifiers, so it has no reason to be long.
const MaxKeyIDBytes = 64

// Key is one ES256 signing key. Keys are compared and published by ID, so
// IDs must be distinct within Options.Keys and never reused for a different
// private key (verifiers cache JWKS documents by kid).
type Key struct {
	// ID is the JWS kid: 1 to MaxKeyIDBytes printable ASCII bytes.
	ID string
	// Private is the P-256 private key. Any other curve is refused.
	Private *ecdsa.PrivateKey
}

// validate reports the problems with k, if any, one per line. It does no I/O.
func (k Key) validate() error { return errors.Join(k.problems()...) }

func (k Key) problems() []error {
	var errs []error
	if k.ID == "" {
		errs = append(errs, errors.New("key ID is empty"))
	} else if len(k.ID) > MaxKeyIDBytes {
		errs = append(errs, fmt.Errorf("key ID is longer than %d bytes", MaxKeyIDBytes))
	} else {
		for i := 0; i < len(k.ID); i++ {
			if c := k.ID[i]; c <= ' ' || c > '~' {
				errs = append(errs, errors.New("key ID must be printable ASCII without spaces"))
				break
			}
		}
	}
	switch {
	case k.Private == nil:
		errs = append(errs, errors.New("private key is missing"))
	case k.Private.Curve != elliptic.P256():
		errs = append(errs, errors.New("private key is not on P-256 (ES256 needs P-256)"))
	default:
		// ECDH validates the scalar and that the public point matches it.
		if _, err := k.Private.ECDH(); err != nil {
			errs = append(errs, fmt.Errorf("private key is invalid: %w", err))
		}
	}
	return errs
}

// GenerateKey returns a new random P-256 key with the given ID.
func GenerateKey(id string) (Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generating P-256 key: %w", err)
	}
	k := Key{ID: id, Private: priv}
	if err := k.validate(); err != nil {
		return Key{}, err
	}
	return k, nil
}

// ParseKeyPEM parses one PEM-encoded P-256 private key, either PKCS #8
// ("PRIVATE KEY", what [MarshalKeyPEM] writes) or SEC 1 ("EC PRIVATE KEY",
// what `openssl ecparam -genkey` writes), and gives it the ID id. Anything
// after the first PEM block other than whitespace is refused, so a file
// holding two keys is an error rather than a silent choice. Errors never
// include key material.
func ParseKeyPEM(id string, data []byte) (Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("parsing key PEM: no PEM block found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return Key{}, errors.New("parsing key PEM: data after the first PEM block")
	}
	if len(block.Headers) != 0 {
		return Key{}, errors.New("parsing key PEM: encrypted or annotated PEM blocks are not supported")
	}
	var priv *ecdsa.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, fmt.Errorf("parsing key PEM: PKCS #8: %w", err)
		}
		var ok bool
		if priv, ok = k.(*ecdsa.PrivateKey); !ok {
			return Key{}, fmt.Errorf("parsing key PEM: %T is not an ECDSA key", k)
		}
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return Key{}, fmt.Errorf("parsing key PEM: SEC 1: %w", err)
		}
		priv = k
	default:
		return Key{}, fmt.Errorf("parsing key PEM: block type %q (want PRIVATE KEY or EC PRIVATE KEY)", block.Type)
	}
	k := Key{ID: id, Private: priv}
	if err := k.validate(); err != nil {
		return Key{}, fmt.Errorf("parsing key PEM: %w", err)
	}
	return k, nil
}

// MarshalKeyPEM encodes k's private key as a PKCS #8 "PRIVATE KEY" PEM block.
// The ID is not part of the encoding; it lives next to the secret reference.
// The result is secret material: store it only in a secret manager or a file
// readable by gatehouse alone.
func MarshalKeyPEM(k Key) ([]byte, error) {
	if err := k.validate(); err != nil {
		return nil, fmt.Errorf("marshaling key PEM: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("marshaling key PEM: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
