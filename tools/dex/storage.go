package main

import (
	"context"
	"errors"

	"github.com/dexidp/dex/storage"
)

// refreshOutsideLock works around a deadlock of this Dex commit. With
// sessions off, the refresh grant re-reads the user inside the updater it
// passes to UpdateRefreshToken (server/tokens/refresh_store.go, Rotate calls
// freshIdentity; server/grants/refresh.go reads the offline session there).
// The memory storage runs updaters under its one mutex and the SQLite
// storages allow one connection, so that read waits forever and every
// refresh hangs. Storages with a connection pool (Postgres, MySQL) do not
// deadlock.
//
// This wrapper runs Dex's updater outside the storage's lock, on a copy read
// before, and then stores the result only if the token did not change
// meanwhile (compare and swap), which keeps a token from being redeemed twice.
// Only UpdateRefreshToken differs; main installs it only when sessions are off,
// where the refresh path needs it.
type refreshOutsideLock struct {
	storage.Storage
}

var errRefreshRace = errors.New("refresh token changed concurrently")

func (s refreshOutsideLock) UpdateRefreshToken(ctx context.Context, id string, updater func(storage.RefreshToken) (storage.RefreshToken, error)) error {
	old, err := s.GetRefresh(ctx, id)
	if err != nil {
		return err
	}
	updated, err := updater(old)
	if err != nil {
		return err
	}
	return s.Storage.UpdateRefreshToken(ctx, id, func(cur storage.RefreshToken) (storage.RefreshToken, error) {
		if cur.Token != old.Token || cur.ObsoleteToken != old.ObsoleteToken || !cur.LastUsed.Equal(old.LastUsed) {
			return cur, errRefreshRace
		}
		return updated, nil
	})
}
