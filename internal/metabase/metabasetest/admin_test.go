package metabasetest

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var adminKey = map[string]string{"X-Api-Key": "mb_admin"}

func brokerServer(t *testing.T) *Server {
	t.Helper()
	return New(t, Options{APIKeys: []APIKey{
		{Name: "gatehouse", Key: "mb_admin", GroupID: AdministratorsGroupID},
		{Name: "reader", Key: "mb_reader", GroupID: AllUsersGroupID},
	}})
}

// TestAPIKeyPermissions pins 2.1 and 3.2: x-api-key authenticates as the
// key's hidden user; only a key in Administrators reaches the admin API.
func TestAPIKeyPermissions(t *testing.T) {
	s := brokerServer(t)
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"admin key", adminKey, http.StatusOK},
		{"non-admin key", map[string]string{"X-Api-Key": "mb_reader"}, http.StatusForbidden},
		{"unknown key", map[string]string{"X-Api-Key": "mb_nope"}, http.StatusUnauthorized},
		{"no credentials", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, do(t, s, req{path: "/api/user", header: tc.header}), tc.status)
			wantStatus(t, do(t, s, req{path: "/api/permissions/group", header: tc.header}), tc.status)
		})
	}
	r := do(t, s, req{path: "/api/user", header: adminKey})
	users := decode[struct {
		Data  []map[string]any `json:"data"`
		Total int              `json:"total"`
	}](t, r)
	if users.Total != 1 || users.Data[0]["email"] != SetupAdminEmail {
		t.Errorf("GET /api/user lists hidden API-key users: %s", r.body)
	}
}

// TestBrokerFlow is the broker mode's path through 3.3: find by email,
// create with a password, sign in, replace the memberships, deactivate,
// reactivate.
func TestBrokerFlow(t *testing.T) {
	s := brokerServer(t)
	fin := s.AddGroup("Finance")
	s.AddUser(NewUser{Email: "zed@example.com", FirstName: "Ana"})

	find := func(q, status string) []map[string]any {
		r := do(t, s, req{path: "/api/user?query=" + q + "&status=" + status, header: adminKey})
		wantStatus(t, r, http.StatusOK)
		return decode[struct {
			Data []map[string]any `json:"data"`
		}](t, r).Data
	}
	if got := find("ana%40example.com", ""); len(got) != 0 {
		t.Fatalf("found %v before creation", got)
	}
	create := map[string]any{"email": "ana@example.com", "first_name": "Ana", "last_name": "Lima", "password": "derived-pass-1",
		"user_group_memberships": []map[string]int{{"id": 1}, {"id": fin}}, "login_attributes": map[string]string{"region": "EU"}}
	r := do(t, s, req{method: http.MethodPost, path: "/api/user", header: adminKey, body: create})
	wantStatus(t, r, http.StatusOK)
	id := int(decode[map[string]any](t, r)["id"].(float64))
	create["email"] = "ANA@example.com"
	r = do(t, s, req{method: http.MethodPost, path: "/api/user", header: adminKey, body: create})
	wantStatus(t, r, http.StatusBadRequest)
	if got := decode[map[string]map[string]string](t, r)["errors"]["email"]; got != msgEmailInUse {
		t.Errorf("duplicate email error %q", got)
	}
	if got := find("ANA%40EXAMPLE", ""); len(got) != 1 || got[0]["email"] != "ana@example.com" {
		t.Errorf("search by email: %v", got)
	}
	if got := find("ana", ""); len(got) != 2 {
		t.Errorf("query matches first names too: got %d users", len(got))
	}
	key := passwordLogin(t, s, "ana@example.com", "derived-pass-1")

	put := func(body map[string]any) response {
		return do(t, s, req{method: http.MethodPut, path: "/api/user/" + itoa(id), header: adminKey, body: body})
	}
	sales := s.AddGroup("Sales")
	wantStatus(t, put(map[string]any{"user_group_memberships": []map[string]int{{"id": fin}}}), http.StatusBadRequest)
	wantStatus(t, put(map[string]any{"is_superuser": true, "user_group_memberships": []map[string]int{{"id": 1}}}), http.StatusBadRequest)
	r = put(map[string]any{"user_group_memberships": []map[string]int{{"id": 1}, {"id": sales}}})
	wantStatus(t, r, http.StatusOK)
	if u, _ := s.User("ana@example.com"); !cmp.Equal(u.GroupIDs, []int{AllUsersGroupID, sales}) {
		t.Errorf("memberships not replaced: %v", u.GroupIDs)
	}
	wantStatus(t, put(map[string]any{"is_superuser": true}), http.StatusOK)
	if u, _ := s.User("ana@example.com"); !u.Superuser {
		t.Error("is_superuser did not add Administrators")
	}

	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/user/" + itoa(id), header: adminKey}), http.StatusOK)
	if currentEmail(t, s, key) != "" {
		t.Error("deactivation kept the session")
	}
	wantStatus(t, do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": "ana@example.com", "password": "derived-pass-1"}}), http.StatusUnauthorized)
	wantStatus(t, put(map[string]any{"first_name": "X"}), http.StatusNotFound)
	if got := find("ana%40example.com", "deactivated"); len(got) != 1 {
		t.Errorf("status=deactivated: %v", got)
	}
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: "/api/user/" + itoa(id) + "/reactivate", header: adminKey}), http.StatusOK)
	if u, _ := s.User("ana@example.com"); !u.Active || u.Superuser {
		t.Errorf("reactivated user: %+v", u)
	}
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: "/api/user/" + itoa(id) + "/reactivate", header: adminKey}), http.StatusBadRequest)
}

// TestSSOUserNamesCannotBeEdited pins 1.4 and 3.3.
func TestSSOUserNamesCannotBeEdited(t *testing.T) {
	s, clock := jwtServer(t, func(o *Options) {
		o.APIKeys = []APIKey{{Name: "gatehouse", Key: "mb_admin", GroupID: AdministratorsGroupID}}
	})
	key := ssoLogin(t, s, clock, claimsFor(clock, "ana@example.com"))
	u, _ := s.User("ana@example.com")
	for _, rq := range []req{{header: adminKey}, {cookies: sessionCookie(key)}} {
		rq.method, rq.path, rq.body = http.MethodPut, "/api/user/"+itoa(u.ID), map[string]string{"first_name": "Mallory"}
		wantStatus(t, do(t, s, rq), http.StatusBadRequest)
	}
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: "/api/user/" + itoa(u.ID), cookies: sessionCookie(key),
		body: map[string]string{"first_name": "Ana"}}), http.StatusOK)
}

// TestGroupsAndMemberships pins 3.4: the default groups, membership add and
// delete, All Users untouchable, the last admin kept, managers paid-only.
func TestGroupsAndMemberships(t *testing.T) {
	s := brokerServer(t)
	ana := s.AddUser(NewUser{Email: "ana@example.com"})
	r := do(t, s, req{method: http.MethodPost, path: "/api/permissions/group", header: adminKey, body: map[string]string{"name": "Finance"}})
	wantStatus(t, r, http.StatusOK)
	fin := int(decode[map[string]any](t, r)["id"].(float64))
	r = do(t, s, req{path: "/api/permissions/group", header: adminKey})
	groups := decode[[]map[string]any](t, r)
	if len(groups) != 3 || groups[0]["name"] != "All Users" || groups[0]["id"] != 1.0 || groups[1]["name"] != "Administrators" || groups[1]["id"] != 2.0 {
		t.Errorf("groups = %v", groups)
	}

	post := func(body map[string]any) response {
		return do(t, s, req{method: http.MethodPost, path: "/api/permissions/membership", header: adminKey, body: body})
	}
	wantStatus(t, post(map[string]any{"group_id": fin, "user_id": ana.ID, "is_group_manager": true}), http.StatusPaymentRequired)
	wantStatus(t, post(map[string]any{"group_id": AllUsersGroupID, "user_id": ana.ID}), http.StatusBadRequest)
	r = post(map[string]any{"group_id": fin, "user_id": ana.ID})
	wantStatus(t, r, http.StatusOK)
	list := decode[[]map[string]any](t, r)
	if len(list) != 1 || list[0]["user_id"] != float64(ana.ID) {
		t.Errorf("member list %v", list)
	}
	memberships := decode[map[string][]map[string]any](t, do(t, s, req{path: "/api/permissions/membership", header: adminKey}))
	var finMembership, allUsersMembership, adminMembership float64
	for _, m := range memberships[itoa(ana.ID)] {
		switch m["group_id"] {
		case float64(fin):
			finMembership = m["membership_id"].(float64)
		case 1.0:
			allUsersMembership = m["membership_id"].(float64)
		}
	}
	for _, m := range memberships["1"] {
		if m["group_id"] == 2.0 {
			adminMembership = m["membership_id"].(float64)
		}
	}
	del := func(id float64) response {
		return do(t, s, req{method: http.MethodDelete, path: "/api/permissions/membership/" + itoa(int(id)), header: adminKey})
	}
	if finMembership == 0 || allUsersMembership == 0 || adminMembership == 0 {
		t.Fatalf("membership ids not found: %v", memberships)
	}
	wantStatus(t, del(allUsersMembership), http.StatusBadRequest)
	wantStatus(t, del(adminMembership), http.StatusBadRequest) // the setup admin is the last admin
	wantStatus(t, del(finMembership), http.StatusNoContent)
	wantStatus(t, del(finMembership), http.StatusNotFound)
	if u, _ := s.User("ana@example.com"); !cmp.Equal(u.GroupIDs, []int{AllUsersGroupID}) {
		t.Errorf("groups after delete: %v", u.GroupIDs)
	}
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: "/api/permissions/membership/2/clear", header: adminKey}), http.StatusBadRequest)
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: "/api/permissions/membership/" + itoa(fin) + "/clear", header: adminKey}), http.StatusNoContent)
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: "/api/permissions/membership/1", header: adminKey, body: map[string]bool{"is_group_manager": true}}), http.StatusPaymentRequired)
	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/permissions/group/" + itoa(fin), header: adminKey}), http.StatusNoContent)
	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/permissions/group/2", header: adminKey}), http.StatusBadRequest)
}
