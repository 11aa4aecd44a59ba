package session

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestNewRevocationListValidation(t *testing.T) {
	if _, err := NewRevocationList(RevocationOptions{MaxEntries: -1}); err == nil {
		t.Error("negative MaxEntries accepted")
	}
	l := mustRevocations(t, 0)
	if l.max != DefaultMaxRevocations {
		t.Errorf("default MaxEntries = %d", l.max)
	}
}

func TestRevocationRejectsEmptyKeys(t *testing.T) {
	l := mustRevocations(t, 10)
	until := t0.Add(time.Hour)
	for name, err := range map[string]error{
		"zero ID":       l.Revoke(&Session{Issuer: "i", Subject: "s"}, t0, until),
		"empty subject": l.RevokeSubject("i", "", t0, until),
		"empty issuer":  l.RevokeSubject("", "s", t0, until),
		"empty sid":     l.RevokeSID("i", "", t0, until),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if l.Len() != 0 {
		t.Errorf("Len = %d after rejected revocations", l.Len())
	}
	// A session without a SID is not caught by any SID revocation.
	if err := l.RevokeSID("i", "sid", t0, until); err != nil {
		t.Fatal(err)
	}
	if l.Revoked(&Session{ID: NewID(), Issuer: "i", Subject: "s", CreatedAt: t0}) {
		t.Error("a session without a SID was revoked by a SID revocation")
	}
}

func TestRevocationListPrune(t *testing.T) {
	l := mustRevocations(t, 100)
	a, b := typicalSession(t0), typicalSession(t0)
	b.Subject = "other"
	_ = l.Revoke(a, t0, t0.Add(time.Hour))
	_ = l.Revoke(b, t0, t0.Add(2*time.Hour))
	_ = l.RevokeSubject("i", "s", t0, t0.Add(time.Hour))
	_ = l.RevokeSID("i", "sid", t0, t0.Add(3*time.Hour))
	_ = l.Revoke(typicalSession(t0), t0, t0) // already expired: not kept
	if l.Len() != 4 {
		t.Fatalf("Len = %d, want 4", l.Len())
	}
	if n := l.Prune(t0.Add(time.Hour - time.Second)); n != 0 {
		t.Errorf("Prune before any until dropped %d", n)
	}
	if n := l.Prune(t0.Add(time.Hour)); n != 2 {
		t.Errorf("Prune at the first until dropped %d, want 2", n)
	}
	if l.Revoked(a) || !l.Revoked(b) {
		t.Errorf("after pruning: a revoked %v (want false), b revoked %v (want true)", l.Revoked(a), l.Revoked(b))
	}
	if n := l.Prune(t0.Add(3 * time.Hour)); n != 2 || l.Len() != 0 {
		t.Errorf("final Prune dropped %d, left %d", n, l.Len())
	}
	if len(l.perSubject) != 0 {
		t.Errorf("perSubject not emptied: %v", l.perSubject)
	}
}

func TestRevocationUntilOnlyGrows(t *testing.T) {
	l := mustRevocations(t, 10)
	s := typicalSession(t0)
	_ = l.Revoke(s, t0, t0.Add(2*time.Hour))
	_ = l.Revoke(s, t0, t0.Add(time.Hour))
	_ = l.RevokeSubject("i", "s", t0.Add(time.Minute), t0.Add(2*time.Hour))
	_ = l.RevokeSubject("i", "s", t0, t0.Add(time.Hour))
	l.Prune(t0.Add(time.Hour))
	if !l.Revoked(s) {
		t.Error("a second, shorter revocation shortened the first")
	}
	if !l.Revoked(&Session{ID: NewID(), Issuer: "i", Subject: "s", CreatedAt: t0.Add(time.Minute)}) {
		t.Error("a second, earlier subject revocation moved the cutoff back")
	}
}

// TestRevocationListFullRevokesEveryEarlierSession fills the list with
// revocations that have not expired: the next revocation must still take
// effect, and memory must stay bounded, so the list revokes everything
// created so far.
func TestRevocationListFullRevokesEveryEarlierSession(t *testing.T) {
	var overflows []time.Time
	l, err := NewRevocationList(RevocationOptions{MaxEntries: 50, OnOverflow: func(c time.Time) { overflows = append(overflows, c) }})
	if err != nil {
		t.Fatal(err)
	}
	var revoked []*Session
	now := t0
	for i := range 50 {
		s := typicalSession(t0)
		s.Subject = fmt.Sprint("user-", i)
		_ = l.Revoke(s, now, t0.Add(12*time.Hour))
		revoked = append(revoked, s)
	}
	if l.Len() != 50 || len(overflows) != 0 {
		t.Fatalf("Len %d, overflows %d; want 50 and none", l.Len(), len(overflows))
	}
	live := typicalSession(t0.Add(time.Minute))
	now = t0.Add(5 * time.Minute)
	last := typicalSession(t0.Add(2 * time.Minute))
	last.Subject = "one-too-many"
	if err := l.Revoke(last, now, now.Add(12*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(overflows) != 1 || !overflows[0].Equal(now) {
		t.Fatalf("overflows = %v, want one at %v", overflows, now)
	}
	if l.Len() != 0 {
		t.Errorf("Len = %d after overflow, want 0", l.Len())
	}
	for _, s := range append(revoked, last, live) {
		if !l.Revoked(s) {
			t.Errorf("session of %s created %v not revoked after overflow", s.Subject, s.CreatedAt.Sub(t0))
		}
	}
	later := typicalSession(now.Add(time.Second))
	if l.Revoked(later) {
		t.Error("a session created after the overflow is revoked")
	}
	// The cutoff lasts as long as the longest entry it replaced, then goes.
	l.Prune(now.Add(12*time.Hour - time.Second))
	if !l.Revoked(last) {
		t.Error("the cutoff was pruned before the last revocation expired")
	}
	l.Prune(now.Add(12 * time.Hour))
	if l.Revoked(live) {
		t.Error("the cutoff outlived every entry")
	}
}

func TestRevocationListFullPrunesFirst(t *testing.T) {
	var overflows int
	l, _ := NewRevocationList(RevocationOptions{MaxEntries: 3, OnOverflow: func(time.Time) { overflows++ }})
	for i := range 3 {
		_ = l.RevokeSubject("i", fmt.Sprint(i), t0, t0.Add(time.Minute))
	}
	_ = l.RevokeSID("i", "sid", t0.Add(time.Minute), t0.Add(time.Hour))
	if overflows != 0 || l.Len() != 1 {
		t.Errorf("overflows %d, Len %d; want the expired entries pruned instead", overflows, l.Len())
	}
}

// TestRevocationCutoffCoversFutureCreatedSession: a session created by an
// instance whose clock runs a little ahead is still covered when its
// revocation is folded into a cutoff.
func TestRevocationCutoffCoversFutureCreatedSession(t *testing.T) {
	l := mustRevocations(t, 1)
	_ = l.RevokeSID("i", "x", t0, t0.Add(time.Hour))
	ahead := typicalSession(t0.Add(30 * time.Second))
	_ = l.Revoke(ahead, t0, t0.Add(time.Hour)) // overflows
	if !l.Revoked(ahead) {
		t.Error("a session created after now on another clock escaped the cutoff")
	}
}

// TestRepeatedLogoutsCollapseToSubject: one account signing in and out in a
// loop cannot fill the list; after a few entries its logouts revoke all of
// its sessions so far.
func TestRepeatedLogoutsCollapseToSubject(t *testing.T) {
	l := mustRevocations(t, 100)
	now := t0
	var all []*Session
	for range 1000 {
		now = now.Add(time.Second)
		s := typicalSession(now)
		all = append(all, s)
		if err := l.Revoke(s, now, now.Add(12*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if l.Len() > maxIDsPerSubject+1 {
		t.Errorf("Len = %d after 1000 logouts of one user", l.Len())
	}
	for i, s := range all {
		if !l.Revoked(s) {
			t.Fatalf("logout %d not in effect", i)
		}
	}
	if l.Revoked(typicalSession(now.Add(time.Second))) {
		t.Error("the user's next login is revoked")
	}
}

func TestRevokeAll(t *testing.T) {
	l := mustRevocations(t, 10)
	before, after := typicalSession(t0), typicalSession(t0.Add(time.Second))
	l.RevokeAll(t0, t0.Add(time.Hour))
	if !l.Revoked(before) || l.Revoked(after) {
		t.Errorf("RevokeAll: before revoked %v, after revoked %v", l.Revoked(before), l.Revoked(after))
	}
}

func TestRevocationListConcurrent(t *testing.T) {
	l := mustRevocations(t, 500)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				now := t0.Add(time.Duration(i) * time.Second)
				s := typicalSession(now)
				s.Subject = fmt.Sprint(g, "-", i)
				switch i % 4 {
				case 0:
					_ = l.Revoke(s, now, now.Add(time.Minute))
				case 1:
					_ = l.RevokeSubject(s.Issuer, s.Subject, now, now.Add(time.Minute))
				case 2:
					_ = l.RevokeSID(s.Issuer, s.Subject, now, now.Add(time.Minute))
				case 3:
					l.Prune(now)
				}
				l.Revoked(s)
				l.Len()
			}
		})
	}
	wg.Wait()
	if l.Len() > 500 {
		t.Errorf("Len = %d over the cap", l.Len())
	}
}
