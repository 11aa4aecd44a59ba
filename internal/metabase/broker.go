package metabase

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

// MinBrokerKeyLen is the shortest BrokerKey accepted, in bytes.
const MinBrokerKeyLen = 32

// BrokerAttribute is the login attribute (3.3) that marks an account the
// broker manages. Its value is a hash of the identity's issuer and subject
// (not the identity itself), so the broker resets the password only of
// accounts it created for that same identity. It is visible to Metabase
// admins and usable in sandboxing rules; it is not a secret.
const BrokerAttribute = "gatehouse_broker_id"

// passwordDomain separates the broker's HMAC inputs from any other use of
// the key.
const passwordDomain = "gatehouse/metabase-broker/password/v1"

// BrokerOptions configure a Broker.
type BrokerOptions struct {
	// Client is the Metabase client; it must have an admin APIKey.
	Client *Client
	// BrokerKey derives every brokered password (Password). At least
	// MinBrokerKeyLen bytes. Changing it changes every password: each user's
	// next sign-in then fails once, resets the password and retries.
	BrokerKey secret.Value
	// GroupMap maps IdP group names to Metabase group names. Only the
	// Metabase groups named here are managed: a user is added to those its
	// IdP groups map to and removed from the others; every other group,
	// Administrators included unless named here, is left alone, and All
	// Users is always kept. Names must exist in Metabase at sign-in, else
	// the sign-in fails with an *UnknownGroupError naming the group.
	GroupMap map[string]string
	// PasswordCounter is the counter Password is called with. Bump it to
	// rotate every brokered password (each resets at its next sign-in).
	PasswordCounter int
	// ReactivateDeactivated lets SignIn reactivate a deactivated user.
	// Default false: a deactivated user stays deactivated and SignIn fails
	// with ErrUserDeactivated. (JWT SSO with provisioning on does the
	// opposite: it reactivates, contract 1.4 and 6.13.) Reactivation resets
	// is_superuser; Administrators comes back only if the GroupMap grants it.
	ReactivateDeactivated bool
	// AdoptExistingAccounts lets the broker reset the password of an account
	// it did not create for this identity: an account made by hand, by
	// another identity with the same email, or before the broker existed.
	// Default false (ErrNotBrokered), because adoption makes the IdP's email
	// claim the only proof of ownership of a Metabase account, and kills its
	// human-known password. Adopted accounts are marked with
	// BrokerAttribute.
	AdoptExistingAccounts bool
	// Logger receives one line per account change (creation, reactivation,
	// group or name change, password reset). Never secrets. Default: none.
	Logger *slog.Logger
}

// Broker signs users in to a Metabase without JWT SSO (the free edition,
// contract 0.B) by brokering credentials: each user gets a password derived
// from the broker key and its IdP identity, which only gatehouse knows, and
// gatehouse signs in with it through POST /api/session.
type Broker struct {
	c       *Client
	key     secret.Value
	groups  map[string]string
	counter int
	react   bool
	adopt   bool
	log     *slog.Logger
}

// NewBroker validates opts and returns a Broker.
func NewBroker(opts BrokerOptions) (*Broker, error) {
	var problems []string
	if opts.Client == nil {
		problems = append(problems, "client is required")
	} else if opts.Client.apiKey.IsZero() {
		problems = append(problems, "client has no admin api key")
	}
	if n := len(opts.BrokerKey.Reveal()); n < MinBrokerKeyLen {
		problems = append(problems, fmt.Sprintf("broker key has %d bytes, want at least %d", n, MinBrokerKeyLen))
	}
	for _, k := range slices.Sorted(maps.Keys(opts.GroupMap)) {
		if k == "" || strings.TrimSpace(opts.GroupMap[k]) == "" {
			problems = append(problems, fmt.Sprintf("group map entry %q → %q: both names must be non-empty", k, opts.GroupMap[k]))
		}
		if opts.GroupMap[k] == "All Users" {
			problems = append(problems, fmt.Sprintf("group map entry %q → \"All Users\": every user is always in All Users", k))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New("metabase: broker: " + strings.Join(problems, "; "))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{c: opts.Client, key: opts.BrokerKey, groups: maps.Clone(opts.GroupMap),
		counter: opts.PasswordCounter, react: opts.ReactivateDeactivated, adopt: opts.AdoptExistingAccounts, log: log}, nil
}

// lengthPrefixed appends s with its length, so that no two (issuer,
// subject) pairs encode alike ("a","bc" vs "ab","c").
func lengthPrefixed(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func (b *Broker) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, b.key.Reveal())
	var in []byte
	for _, p := range parts {
		in = lengthPrefixed(in, p)
	}
	m.Write(in)
	return m.Sum(nil)
}

// Password returns the brokered password of (issuer, subject) at counter:
// HMAC-SHA256 keyed with the broker key over the length-prefixed domain
// string, issuer, subject and decimal counter, as unpadded base64url (43
// characters, 256 bits), wrapped as "Mb!" + … + "a1Z". The fixed wrapper
// guarantees every class any of Metabase's password-complexity settings
// asks for (the strongest: 8 characters, 2 lower case, 2 upper case, 1
// digit, 1 special; "normal", the default: 6 characters with a digit) [the
// rules are inferred from ms/ValidPassword, contract 3.3]; at 49 ASCII bytes
// it stays under bcrypt's 72-byte limit, and being random it is on no
// common-password list. It is deterministic: the same inputs give the same
// password.
func (b *Broker) Password(issuer, subject string, counter int) string {
	sum := b.mac(passwordDomain, issuer, subject, fmt.Sprint(counter))
	return "Mb!" + base64.RawURLEncoding.EncodeToString(sum) + "a1Z"
}

// marker is the BrokerAttribute value of (issuer, subject).
func (b *Broker) marker(issuer, subject string) string {
	sum := sha256.Sum256(lengthPrefixed(lengthPrefixed([]byte("gatehouse/metabase-broker/id/v1"), issuer), subject))
	return hex.EncodeToString(sum[:16])
}

// Identity is the signed-in user as the IdP describes it.
type Identity struct {
	// Issuer and Subject identify the user at the IdP; the password derives
	// from them. Required.
	Issuer, Subject string
	// Email finds the Metabase account (case-insensitively). Required; the
	// caller must only pass emails the IdP has verified.
	Email string
	// Name is the display name; SplitName derives Metabase's names.
	Name string
	// Groups are the IdP groups, mapped through GroupMap.
	Groups []string
}

// SignIn returns a Metabase session for id:
//
//  1. find the account by email (active or not), creating it when missing
//     with the derived password and the mapped groups;
//  2. a deactivated account fails with ErrUserDeactivated unless
//     ReactivateDeactivated is set;
//  3. sync names (not for SSO users) and the managed groups, in one PUT
//     that keeps All Users and every unmanaged group;
//  4. POST /api/session with the derived password; when that fails with
//     ErrBadCredentials (the user used "forgot password", or the key or
//     counter changed), reset the password through the admin API and try
//     once more. Nothing else is retried: ErrThrottled comes back at once.
//
// A password reset deletes all of the user's Metabase sessions (2.3).
func (b *Broker) SignIn(ctx context.Context, id Identity) (Session, error) {
	if id.Issuer == "" || id.Subject == "" || strings.TrimSpace(id.Email) == "" {
		return Session{}, errors.New("metabase: broker sign-in: identity needs issuer, subject and email")
	}
	target, managed, err := b.resolveGroups(ctx, id.Groups)
	if err != nil {
		return Session{}, err
	}
	marker := b.marker(id.Issuer, id.Subject)
	pw := b.Password(id.Issuer, id.Subject, b.counter)
	first, last := SplitName(id.Name)

	acct, created, err := b.findOrCreate(ctx, id.Email, first, last, pw, target, marker)
	if err != nil {
		return Session{}, err
	}
	if !acct.Active {
		if !b.react {
			return Session{}, fmt.Errorf("metabase: broker sign-in of user %d: %w", acct.ID, ErrUserDeactivated)
		}
		if acct, err = b.c.Reactivate(ctx, acct.ID); err != nil {
			return Session{}, err
		}
		b.log.Info("metabase: reactivated user", "user_id", acct.ID)
	}
	if !created {
		if acct, err = b.c.GetUser(ctx, acct.ID); err != nil {
			return Session{}, err
		}
		if err := b.syncNames(ctx, acct, first, last); err != nil {
			return Session{}, err
		}
		if err := b.syncGroups(ctx, acct, target, managed); err != nil {
			return Session{}, err
		}
	}

	s, err := b.c.Login(ctx, acct.Email, pw)
	if !errors.Is(err, ErrBadCredentials) {
		return s, err
	}
	// The stored password no longer matches: reset it, once.
	if !created && acct.LoginAttributes[BrokerAttribute] != marker {
		if !b.adopt {
			return Session{}, fmt.Errorf("metabase: broker sign-in of user %d: %w", acct.ID, ErrNotBrokered)
		}
		attrs := maps.Clone(acct.LoginAttributes)
		if attrs == nil {
			attrs = map[string]any{}
		}
		attrs[BrokerAttribute] = marker
		if _, err := b.c.UpdateUser(ctx, acct.ID, AccountUpdate{LoginAttributes: attrs}); err != nil {
			return Session{}, err
		}
		b.log.Info("metabase: adopted existing user", "user_id", acct.ID)
	}
	if err := b.c.SetPassword(ctx, acct.ID, pw); err != nil {
		return Session{}, err
	}
	b.log.Info("metabase: reset brokered password", "user_id", acct.ID)
	return b.c.Login(ctx, acct.Email, pw)
}

// findOrCreate finds the account, or creates it. A concurrent creation
// (400, email in use) is resolved by finding it once more.
func (b *Broker) findOrCreate(ctx context.Context, email, first, last, pw string, target []int, marker string) (Account, bool, error) {
	acct, err := b.c.FindUser(ctx, email)
	if !errors.Is(err, ErrUserNotFound) {
		return acct, false, err
	}
	acct, err = b.c.CreateUser(ctx, NewAccount{Email: email, FirstName: first, LastName: last, Password: pw,
		GroupIDs: target, LoginAttributes: map[string]any{BrokerAttribute: marker}})
	if errors.Is(err, ErrBadRequest) {
		if again, ferr := b.c.FindUser(ctx, email); ferr == nil {
			return again, false, nil
		}
	}
	if err != nil {
		return Account{}, false, err
	}
	b.log.Info("metabase: created user", "user_id", acct.ID, "groups", acct.GroupIDs)
	return acct, true, nil
}

// resolveGroups maps IdP groups to Metabase group ids: target is what the
// user should have among managed, the ids of every GroupMap value.
func (b *Broker) resolveGroups(ctx context.Context, idpGroups []string) (target, managed []int, err error) {
	if len(b.groups) == 0 {
		return nil, nil, nil
	}
	all, err := b.c.ListGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]int{}
	for _, g := range all {
		byName[g.Name] = g.ID
	}
	for _, name := range slices.Sorted(maps.Values(b.groups)) {
		gid, ok := byName[name]
		if !ok {
			return nil, nil, &UnknownGroupError{Name: name}
		}
		if gid != AllUsersGroupID {
			managed = append(managed, gid)
		}
	}
	for _, g := range idpGroups {
		if name, ok := b.groups[g]; ok && byName[name] != AllUsersGroupID {
			target = append(target, byName[name])
		}
	}
	slices.Sort(managed)
	slices.Sort(target)
	return slices.Compact(target), slices.Compact(managed), nil
}

// syncGroups makes the managed part of acct's groups equal target.
func (b *Broker) syncGroups(ctx context.Context, acct Account, target, managed []int) error {
	if len(managed) == 0 {
		return nil
	}
	var want []int
	for _, gid := range acct.GroupIDs {
		if !slices.Contains(managed, gid) {
			want = append(want, gid)
		}
	}
	want = append(want, target...)
	want = append(want, AllUsersGroupID)
	slices.Sort(want)
	want = slices.Compact(want)
	if slices.Equal(want, acct.GroupIDs) {
		return nil
	}
	if _, err := b.c.SetGroups(ctx, acct.ID, want); err != nil {
		return err
	}
	b.log.Info("metabase: synced groups", "user_id", acct.ID, "from", acct.GroupIDs, "to", want)
	return nil
}

// syncNames updates the names when the IdP gives some and they differ.
// SSO users' names are Metabase's to keep (3.3).
func (b *Broker) syncNames(ctx context.Context, acct Account, first, last string) error {
	if first == "" || acct.SSOSource != "" || (acct.FirstName == first && acct.LastName == last) {
		return nil
	}
	if _, err := b.c.UpdateUser(ctx, acct.ID, AccountUpdate{FirstName: &first, LastName: &last}); err != nil {
		return err
	}
	b.log.Info("metabase: updated names", "user_id", acct.ID)
	return nil
}

// Deprovision deactivates the account with this email: DELETE
// /api/user/:id (3.3), which also revokes its sessions (2.3). No account, or
// one already deactivated, is not an error.
func (b *Broker) Deprovision(ctx context.Context, email string) error {
	acct, err := b.c.FindUser(ctx, email)
	if errors.Is(err, ErrUserNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !acct.Active {
		return nil
	}
	if err := b.c.Deactivate(ctx, acct.ID); err != nil {
		return err
	}
	b.log.Info("metabase: deactivated user", "user_id", acct.ID)
	return nil
}
