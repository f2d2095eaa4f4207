package registrytest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TokenServer is the token endpoint of the distribution spec's token auth,
// for a registry configured with auth: token: and this server's CA as its
// rootcertbundle: it checks a basic-auth user and password and hands out
// ES256 JWTs (signed by the CA's key, with the CA's certificate in x5c)
// granting every action asked for.
type TokenServer struct {
	CA              *CA
	Service, Issuer string
	User, Password  string
	addr            string
	// Issued counts the tokens handed out.
	Issued atomic.Int64
}

// StartTokenServer serves tokens on a free port until the test ends.
func StartTokenServer(t testing.TB, user, password string) *TokenServer {
	t.Helper()
	ts := &TokenServer{CA: NewCA(t), Service: "strata-test-registry", Issuer: "strata-test-issuer", User: user, Password: password}
	l := Listen(t)
	ts.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(ts.serve)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ts
}

// Realm is the URL the registry sends clients to.
func (ts *TokenServer) Realm() string { return "http://" + ts.addr + "/token" }

func (ts *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != ts.User || p != ts.Password {
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	var grants []access
	for _, sc := range r.URL.Query()["scope"] {
		for _, one := range strings.Fields(sc) {
			parts := strings.Split(one, ":")
			if len(parts) < 3 {
				continue
			}
			name := strings.Join(parts[1:len(parts)-1], ":")
			grants = append(grants, access{Type: parts[0], Name: name, Actions: strings.Split(parts[len(parts)-1], ",")})
		}
	}
	now := time.Now()
	claims := map[string]any{
		"iss": ts.Issuer, "sub": u, "aud": ts.Service,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprint(now.UnixNano()), "access": grants,
	}
	tok, err := ts.sign(claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ts.Issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": now.Format(time.RFC3339)})
}

func (ts *TokenServer) sign(claims map[string]any) (string, error) {
	hdr := map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.CA.Cert.Raw)}}
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, ts.CA.Key, sum[:])
	if err != nil {
		return "", err
	}
	sig := append(pad32(r), pad32(s)...)
	return signing + "." + enc.EncodeToString(sig), nil
}

func pad32(n *big.Int) []byte {
	b := n.Bytes()
	out := make([]byte, 32)
	copy(out[32-len(b):], b)
	return out
}

func basicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}
