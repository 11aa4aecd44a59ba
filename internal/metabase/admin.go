package metabase

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Default group ids (contract 1.6).
const (
	AllUsersGroupID       = 1
	AdministratorsGroupID = 2
)

// Account is a Metabase user as the user endpoints return it (contract 2.4,
// 3.3).
type Account struct {
	ID        int
	Email     string
	FirstName string
	LastName  string
	Active    bool
	Superuser bool
	// SSOSource is "jwt" for users JWT SSO created or updated (1.4); empty
	// when Metabase does not report it (OSS).
	SSOSource string
	// GroupIDs are the user's groups, sorted, All Users included, when the
	// endpoint reports them.
	GroupIDs []int
	// LoginAttributes are the admin-set user attributes, when reported.
	LoginAttributes map[string]any
}

type accountJSON struct {
	ID              int            `json:"id"`
	Email           string         `json:"email"`
	FirstName       *string        `json:"first_name"`
	LastName        *string        `json:"last_name"`
	IsActive        bool           `json:"is_active"`
	IsSuperuser     bool           `json:"is_superuser"`
	SSOSource       *string        `json:"sso_source"`
	GroupIDs        []int          `json:"group_ids"`
	Memberships     []groupRef     `json:"user_group_memberships"`
	LoginAttributes map[string]any `json:"login_attributes"`
	// StructuredAttributes is what GET /api/user/:id reports in the newest
	// versions (3.3); its shape is not in the contract, so a value is read
	// either as is or from a {"value": …} object [inferred].
	StructuredAttributes map[string]any `json:"structured_attributes"`
}

type groupRef struct {
	ID int `json:"id"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (a accountJSON) account() Account {
	out := Account{ID: a.ID, Email: a.Email, FirstName: str(a.FirstName), LastName: str(a.LastName),
		Active: a.IsActive, Superuser: a.IsSuperuser, SSOSource: str(a.SSOSource), LoginAttributes: a.LoginAttributes}
	for k, v := range a.StructuredAttributes {
		if _, ok := out.LoginAttributes[k]; ok {
			continue
		}
		if m, ok := v.(map[string]any); ok {
			v = m["value"]
		}
		if out.LoginAttributes == nil {
			out.LoginAttributes = map[string]any{}
		}
		out.LoginAttributes[k] = v
	}
	ids := slices.Clone(a.GroupIDs)
	for _, m := range a.Memberships {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	out.GroupIDs = slices.Compact(ids)
	return out
}

// Group is a permission group (contract 3.4).
type Group struct {
	ID   int
	Name string
}

// FindUser returns the user whose email equals email, case-insensitively
// (Metabase's rule, 1.4), active or not: GET /api/user?query=…&status=all.
// The query also matches names, so the result is filtered by email. Errors
// wrap ErrUserNotFound when there is none.
func (c *Client) FindUser(ctx context.Context, email string) (Account, error) {
	cl := call{method: http.MethodGet, path: "/api/user", auth: authAPIKey,
		query: url.Values{"query": {email}, "status": {"all"}}}
	r, err := c.do(ctx, cl)
	if err != nil {
		return Account{}, err
	}
	if r.status != http.StatusOK {
		return Account{}, c.fail(cl, r)
	}
	var out struct {
		Data []accountJSON `json:"data"`
	}
	if err := c.decode(cl, r, &out); err != nil {
		return Account{}, err
	}
	for _, a := range out.Data {
		if strings.EqualFold(a.Email, email) {
			return a.account(), nil
		}
	}
	return Account{}, &Error{Op: c.op(cl), Status: r.status, Kind: ErrUserNotFound}
}

// GetUser returns a user by id: GET /api/user/:id (3.3), which includes
// the memberships and login attributes.
func (c *Client) GetUser(ctx context.Context, id int) (Account, error) {
	cl := call{method: http.MethodGet, path: "/api/user/" + strconv.Itoa(id), auth: authAPIKey}
	return c.accountCall(ctx, cl)
}

func (c *Client) accountCall(ctx context.Context, cl call) (Account, error) {
	r, err := c.do(ctx, cl)
	if err != nil {
		return Account{}, err
	}
	if r.status != http.StatusOK {
		return Account{}, c.fail(cl, r)
	}
	var a accountJSON
	if err := c.decode(cl, r, &a); err != nil {
		return Account{}, err
	}
	return a.account(), nil
}

// NewAccount describes a user to create.
type NewAccount struct {
	Email, FirstName, LastName string
	// Password is the initial password. Metabase's schema does not declare
	// it but invite-user copies it [inferred, 3.3]; when Metabase ignores
	// it, the user gets a random password instead. Empty: random.
	Password string
	// GroupIDs are the groups besides All Users, which is always added.
	GroupIDs []int
	// LoginAttributes are user attributes (used for sandboxing).
	LoginAttributes map[string]any
}

// CreateUser creates a user: POST /api/user (3.3). An email already in use
// (case-insensitively) is ErrBadRequest with "email" in Detail.
func (c *Client) CreateUser(ctx context.Context, na NewAccount) (Account, error) {
	body := map[string]any{"email": na.Email, "user_group_memberships": memberships(na.GroupIDs)}
	if na.FirstName != "" {
		body["first_name"] = na.FirstName
	}
	if na.LastName != "" {
		body["last_name"] = na.LastName
	}
	if na.Password != "" {
		body["password"] = na.Password
	}
	if na.LoginAttributes != nil {
		body["login_attributes"] = na.LoginAttributes
	}
	cl := call{method: http.MethodPost, path: "/api/user", auth: authAPIKey, body: body, secrets: []string{na.Password}}
	return c.accountCall(ctx, cl)
}

// AccountUpdate holds the fields UpdateUser changes; nil fields are left
// alone.
type AccountUpdate struct {
	// FirstName and LastName cannot change for SSO users (3.3, 400).
	FirstName, LastName *string
	// LoginAttributes replaces the user's attributes.
	LoginAttributes map[string]any
}

// UpdateUser changes an active user: PUT /api/user/:id (3.3). A
// deactivated user is ErrNotFound; reactivate it first.
func (c *Client) UpdateUser(ctx context.Context, id int, u AccountUpdate) (Account, error) {
	body := map[string]any{}
	if u.FirstName != nil {
		body["first_name"] = *u.FirstName
	}
	if u.LastName != nil {
		body["last_name"] = *u.LastName
	}
	if u.LoginAttributes != nil {
		body["login_attributes"] = u.LoginAttributes
	}
	cl := call{method: http.MethodPut, path: "/api/user/" + strconv.Itoa(id), auth: authAPIKey, body: body}
	return c.accountCall(ctx, cl)
}

// SetGroups replaces the user's memberships with groupIDs plus All Users:
// PUT /api/user/:id {"user_group_memberships":[…]} (3.3). The list
// REPLACES the whole set, so pass every group the user keeps, including the
// unmanaged ones. Administrators (2) in the list makes the user a
// superuser; leaving it out removes superuser, which Metabase refuses for
// the last admin (400).
func (c *Client) SetGroups(ctx context.Context, id int, groupIDs []int) (Account, error) {
	cl := call{method: http.MethodPut, path: "/api/user/" + strconv.Itoa(id), auth: authAPIKey,
		body: map[string]any{"user_group_memberships": memberships(groupIDs)}}
	return c.accountCall(ctx, cl)
}

// memberships is All Users plus ids, sorted and without duplicates.
func memberships(ids []int) []groupRef {
	all := append([]int{AllUsersGroupID}, ids...)
	slices.Sort(all)
	all = slices.Compact(all)
	out := make([]groupRef, 0, len(all))
	for _, id := range all {
		out = append(out, groupRef{ID: id})
	}
	return out
}

// SetPassword sets a user's password as an admin: PUT /api/user/:id/password
// (3.3). The password must satisfy Metabase's complexity rules (400
// otherwise). Metabase deletes ALL of that user's sessions (2.3); it returns
// a new session only when the caller is that user, never for an API key,
// so none is returned here.
func (c *Client) SetPassword(ctx context.Context, id int, password string) error {
	cl := call{method: http.MethodPut, path: "/api/user/" + strconv.Itoa(id) + "/password", auth: authAPIKey,
		body: map[string]string{"password": password}, secrets: []string{password}}
	r, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if r.status/100 != 2 {
		return c.fail(cl, r)
	}
	return nil
}

// Deactivate deactivates a user: DELETE /api/user/:id (3.3). Metabase also
// revokes the user's sessions (2.3).
func (c *Client) Deactivate(ctx context.Context, id int) error {
	cl := call{method: http.MethodDelete, path: "/api/user/" + strconv.Itoa(id), auth: authAPIKey}
	r, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if r.status/100 != 2 {
		return c.fail(cl, r)
	}
	return nil
}

// Reactivate reactivates a deactivated user: PUT /api/user/:id/reactivate
// (3.3). An active user is ErrBadRequest. Metabase resets is_superuser to
// false, so Administrators must be granted again if wanted.
func (c *Client) Reactivate(ctx context.Context, id int) (Account, error) {
	cl := call{method: http.MethodPut, path: "/api/user/" + strconv.Itoa(id) + "/reactivate", auth: authAPIKey}
	return c.accountCall(ctx, cl)
}

// ListGroups returns every permission group: GET /api/permissions/group
// (3.4).
func (c *Client) ListGroups(ctx context.Context) ([]Group, error) {
	cl := call{method: http.MethodGet, path: "/api/permissions/group", auth: authAPIKey}
	r, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, c.fail(cl, r)
	}
	var raw []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := c.decode(cl, r, &raw); err != nil {
		return nil, err
	}
	out := make([]Group, 0, len(raw))
	for _, g := range raw {
		out = append(out, Group{ID: g.ID, Name: g.Name})
	}
	return out, nil
}

// String describes a group for logs.
func (g Group) String() string { return fmt.Sprintf("%q (%d)", g.Name, g.ID) }
