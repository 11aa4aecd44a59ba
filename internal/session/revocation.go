package session

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// DefaultMaxRevocations is the default capacity of a [RevocationList].
const DefaultMaxRevocations = 100_000

// maxIDsPerSubject is how many single-session revocations one (issuer,
// subject) may hold before they collapse into a revocation of every session
// of that subject created so far. It keeps one account that signs in and out
// in a loop from filling the list.
const maxIDsPerSubject = 8

// RevocationOptions configures a [RevocationList].
type RevocationOptions struct {
	// MaxEntries caps the number of entries (session IDs, subjects and SIDs
	// together). Default: DefaultMaxRevocations (100,000), which take about
	// 30 MB when full.
	MaxEntries int

	// OnOverflow, if set, is called when the list is full even after
	// pruning, with the cutoff it then applies: every session created at or
	// before it is revoked (see RevocationList). It is called without locks
	// held; use it to log an error and count the event.
	OnOverflow func(cutoff time.Time)
}

// RevocationList remembers ended sessions until they would have expired
// anyway. A stateless cookie stays valid until its absolute expiry, so this
// list is what makes logout, back-channel logout and refresh failure final
// (ASVS v5 7.4.1). It is in memory: a restart empties it (see the package
// documentation). It is safe for concurrent use; lookups are O(1).
//
// Entries are bounded by time: each is kept until its until time, which the
// caller sets to the latest moment a covered session could still be valid,
// and [RevocationList.Prune] drops the ones past it. They are bounded by
// count: when an addition finds the list full, it prunes, and if the list is
// still full it fails closed. It then revokes every session created up to
// now (everyone signs in again), drops the entries that this cutoff subsumes
// (all of them) and reports the cutoff through OnOverflow. No revocation is
// ever lost, and memory stays bounded, at the price of a forced sign-in for
// everyone when the cap is reached.
type RevocationList struct {
	max        int
	onOverflow func(time.Time)

	// mu guards every field below.
	mu sync.RWMutex
	// ids holds single sessions by ID.
	ids map[ID]idEntry
	// perSubject counts the entries in ids for each (issuer, subject).
	perSubject map[principal]int
	// subjects and sids revoke every session of an (issuer, subject) or
	// (issuer, sid) created at or before the cutoff's at time.
	subjects map[principal]cutoff
	sids     map[principal]cutoff
	// all, when set, revokes every session created at or before all.at.
	all cutoff
	// lifetime is the longest absolute session lifetime of any store
	// using the list; see extendRetention.
	lifetime time.Duration
}

// principal is an (issuer, subject) or (issuer, sid) pair.
type principal struct {
	issuer, name string
}

// clone copies p's strings, which may be substrings of a whole decoded
// session or logout token, so that an entry does not keep those alive.
func (p principal) clone() principal {
	return principal{strings.Clone(p.issuer), strings.Clone(p.name)}
}

type idEntry struct {
	until   time.Time
	created time.Time // the session's CreatedAt
	subject principal
}

// cutoff revokes sessions created at or before at; it is kept until until.
type cutoff struct {
	at, until time.Time
}

func (c cutoff) covers(created time.Time) bool {
	return !c.at.IsZero() && !created.After(c.at)
}

// merge widens c to cover both c and d.
func (c cutoff) merge(d cutoff) cutoff {
	if d.at.After(c.at) {
		c.at = d.at
	}
	if d.until.After(c.until) {
		c.until = d.until
	}
	return c
}

// NewRevocationList returns an empty list. MaxEntries must not be negative.
func NewRevocationList(opts RevocationOptions) (*RevocationList, error) {
	if opts.MaxEntries < 0 {
		return nil, fmt.Errorf("session: revocation list MaxEntries %d is negative", opts.MaxEntries)
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = DefaultMaxRevocations
	}
	return &RevocationList{
		max:        opts.MaxEntries,
		onOverflow: opts.OnOverflow,
		ids:        make(map[ID]idEntry),
		perSubject: make(map[principal]int),
		subjects:   make(map[principal]cutoff),
		sids:       make(map[principal]cutoff),
	}, nil
}

// Revoke ends the session s (by its ID) until until. Once eight sessions of
// one (issuer, subject) are on the list, revoking another one revokes every
// session of that subject created up to now instead, like
// [RevocationList.RevokeSubject]: the user is signed out everywhere. An
// until at or before now is a no-op: the session has expired already.
func (l *RevocationList) Revoke(s *Session, now, until time.Time) error {
	if s.ID.IsZero() {
		return fmt.Errorf("%w: revoking a session without an ID", ErrInvalid)
	}
	if !until.After(now) {
		return nil
	}
	// A cutoff standing in for this entry must cover s even if s was
	// created a little after now by a clock that runs ahead.
	at := now
	if s.CreatedAt.After(at) {
		at = s.CreatedAt
	}
	p := principal{s.Issuer, s.Subject}
	l.mu.Lock()
	e, ok := l.ids[s.ID]
	if !ok && l.perSubject[p] >= maxIDsPerSubject && s.Issuer != "" && s.Subject != "" {
		l.mu.Unlock()
		return l.RevokeSubject(s.Issuer, s.Subject, at, until)
	}
	var overflow cutoff
	if !ok {
		overflow = l.makeRoom(at, until)
	}
	if overflow.at.IsZero() {
		if !ok {
			p = p.clone()
			l.perSubject[p]++
			e = idEntry{subject: p, created: s.CreatedAt}
		}
		if until.After(e.until) {
			e.until = until
		}
		l.ids[s.ID] = e
	}
	l.mu.Unlock()
	l.reportOverflow(overflow)
	return nil
}

// RevokeSubject ends every session of (issuer, subject) created at or before
// now. Sessions created after now, by signing in again, are not affected.
// The entry is kept until until.
func (l *RevocationList) RevokeSubject(issuer, subject string, now, until time.Time) error {
	if issuer == "" || subject == "" {
		return fmt.Errorf("%w: revoking a subject needs an issuer and a subject", ErrInvalid)
	}
	return l.addCutoff(l.subjects, principal{issuer, subject}, cutoff{now, until})
}

// RevokeSID ends every session with the provider session ID sid from issuer
// created at or before now (OpenID Connect Back-Channel Logout 1.0 §2.4).
// The entry is kept until until.
func (l *RevocationList) RevokeSID(issuer, sid string, now, until time.Time) error {
	if issuer == "" || sid == "" {
		return fmt.Errorf("%w: revoking a provider session needs an issuer and a sid", ErrInvalid)
	}
	return l.addCutoff(l.sids, principal{issuer, sid}, cutoff{now, until})
}

// RevokeAll ends every session created at or before now, for example to sign
// everyone out after a suspected key compromise (removing the key does that
// too) or at start-up, when the list is empty. The cutoff is kept until
// until.
func (l *RevocationList) RevokeAll(now, until time.Time) {
	l.mu.Lock()
	l.all = l.all.merge(cutoff{now, until})
	l.mu.Unlock()
}

func (l *RevocationList) addCutoff(m map[principal]cutoff, p principal, c cutoff) error {
	if !c.until.After(c.at) {
		return nil
	}
	l.mu.Lock()
	var overflow cutoff
	old, ok := m[p]
	if !ok {
		overflow = l.makeRoom(c.at, c.until)
	}
	if overflow.at.IsZero() {
		if !ok {
			p = p.clone()
		}
		m[p] = old.merge(c)
	}
	l.mu.Unlock()
	l.reportOverflow(overflow)
	return nil
}

// makeRoom makes room for one more entry, which revokes sessions created at
// or before at until until. If the list is full it prunes at at; if it is
// still full, it replaces every entry, the new one included, with a
// list-wide cutoff, which it returns. The caller holds mu and must not add
// its entry when the returned cutoff is set.
func (l *RevocationList) makeRoom(at, until time.Time) cutoff {
	if l.lenLocked() < l.max {
		return cutoff{}
	}
	l.pruneLocked(at)
	if l.lenLocked() < l.max {
		return cutoff{}
	}
	// The cutoff must cover every session an entry covers, so it is at the
	// latest creation or cutoff time on the list (normally at itself), and
	// it is kept as long as the longest-lived entry.
	c := cutoff{at: at, until: until}
	for _, e := range l.ids {
		c = c.merge(cutoff{e.created, e.until})
	}
	for _, m := range []map[principal]cutoff{l.subjects, l.sids} {
		for _, d := range m {
			c = c.merge(d)
		}
	}
	l.all = l.all.merge(c)
	clear(l.ids)
	clear(l.perSubject)
	clear(l.subjects)
	clear(l.sids)
	return l.all
}

func (l *RevocationList) reportOverflow(c cutoff) {
	if !c.at.IsZero() && l.onOverflow != nil {
		l.onOverflow(c.at)
	}
}

// extendRetention records that sessions may live for d. The list only
// grows the value, so a store built after lowering the lifetime keeps
// revocations long enough for sessions sealed under the longer one.
func (l *RevocationList) extendRetention(d time.Duration) {
	l.mu.Lock()
	l.lifetime = max(l.lifetime, d)
	l.mu.Unlock()
}

// retention is how long after now a revocation of every session created
// up to now must be kept.
func (l *RevocationList) retention() time.Duration {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lifetime
}

// Revoked reports whether s has been revoked: by its ID, by its (issuer,
// subject) or (issuer, SID) with a cutoff at or after its CreatedAt, or by a
// list-wide cutoff. Entries past their until time count until pruned.
func (l *RevocationList) Revoked(s *Session) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.all.covers(s.CreatedAt) {
		return true
	}
	if _, ok := l.ids[s.ID]; ok {
		return true
	}
	if c, ok := l.subjects[principal{s.Issuer, s.Subject}]; ok && c.covers(s.CreatedAt) {
		return true
	}
	if s.SID != "" {
		if c, ok := l.sids[principal{s.Issuer, s.SID}]; ok && c.covers(s.CreatedAt) {
			return true
		}
	}
	return false
}

// Prune drops the entries whose until time is at or before now and returns
// how many it dropped. Call it periodically (every minute or so); additions
// also prune when the list is full.
func (l *RevocationList) Prune(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pruneLocked(now)
}

func (l *RevocationList) pruneLocked(now time.Time) int {
	n := 0
	keep := func(until time.Time) bool {
		if until.After(now) {
			return true
		}
		n++
		return false
	}
	for id, e := range l.ids {
		if !keep(e.until) {
			delete(l.ids, id)
			if l.perSubject[e.subject]--; l.perSubject[e.subject] <= 0 {
				delete(l.perSubject, e.subject)
			}
		}
	}
	for p, c := range l.subjects {
		if !keep(c.until) {
			delete(l.subjects, p)
		}
	}
	for p, c := range l.sids {
		if !keep(c.until) {
			delete(l.sids, p)
		}
	}
	if !l.all.at.IsZero() && !keep(l.all.until) {
		l.all = cutoff{}
	}
	return n
}

// Len returns the number of entries: session IDs, subjects and SIDs. A
// list-wide cutoff is not counted.
func (l *RevocationList) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lenLocked()
}

func (l *RevocationList) lenLocked() int {
	return len(l.ids) + len(l.subjects) + len(l.sids)
}
