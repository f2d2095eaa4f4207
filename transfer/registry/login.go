package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// DefaultServer is docker's name for Docker Hub in config.json.
const DefaultServer = "https://index.docker.io/v1/"

// ServerHost maps what docker login takes ("", a URL, "host:port") to the
// registry's host:port, and back to config.json's key.
func ServerHost(server string) (hostport, key string) {
	switch server {
	case "", DefaultServer, "docker.io", "index.docker.io", "registry-1.docker.io":
		return "registry-1.docker.io", DefaultServer
	}
	h := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	return h, h
}

// Login checks user and password against the registry server and, if it
// takes them, stores them in docker's config.json (or its credential
// helper).
func (c *Client) Login(ctx context.Context, server, user, password string) error {
	hostport, _ := ServerHost(server)
	reg, err := c.registry(ctx, hostport)
	if err != nil {
		return err
	}
	err = credentials.Login(ctx, c.creds, reg, auth.Credential{Username: user, Password: password})
	var er *errcode.ErrorResponse
	if errors.As(err, &er) && er.StatusCode == 401 {
		return fmt.Errorf("login to %s: %w: incorrect username or password", hostport, ErrUnauthorized)
	}
	if err != nil {
		return fmt.Errorf("login to %s: %w", hostport, err)
	}
	return nil
}

// Logout removes the credentials kept for server. It says whether there
// were any.
func (c *Client) Logout(ctx context.Context, server string) (bool, error) {
	hostport, _ := ServerHost(server)
	cred, err := c.creds.Get(ctx, credentials.ServerAddressFromHostname(hostport))
	if err != nil {
		return false, fmt.Errorf("logout from %s: %w", hostport, err)
	}
	if cred == auth.EmptyCredential {
		return false, nil
	}
	if err := credentials.Logout(ctx, c.creds, hostport); err != nil {
		return true, fmt.Errorf("logout from %s: %w", hostport, err)
	}
	return true, nil
}
