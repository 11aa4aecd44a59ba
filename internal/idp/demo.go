package idp

import (
	_ "embed"
	"sync"
)

//go:embed demo_users.yaml
var demoUsersYAML []byte

var demoUsers = sync.OnceValues(func() (*Users, error) {
	return ParseUsers("demo_users.yaml", demoUsersYAML)
})

// DemoUsers returns the quickstart's demo users: alice / wonderland (groups
// admins and analysts) and bob / builder (group staff). Their passwords are
// public; gatehouse serves them only on loopback listeners.
func DemoUsers() (*Users, error) { return demoUsers() }
