package registry

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/strata-dev/strata/layerstore"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// ErrUnauthorized is a registry's refusal (401 or 403) of what was asked.
var ErrUnauthorized = errors.New("unauthorized")

// explain turns an oras or HTTP error into one a docker user knows, keeping
// the original wrapped: a 401 is "unauthorized: authentication required",
// a missing manifest or blob wraps layerstore.ErrNotFound.
func explain(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		return fmt.Errorf("%s: %w: authentication required (no credentials for this registry: strata login): %w", what, ErrUnauthorized, err)
	}
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		switch er.StatusCode {
		case http.StatusUnauthorized:
			msg := "authentication required"
			if len(er.Errors) > 0 && er.Errors[0].Message != "" && er.Errors[0].Message != "authentication required" {
				msg = "authentication required (" + er.Errors[0].Message + ")"
			}
			return fmt.Errorf("%s: %w: %s: %w", what, ErrUnauthorized, msg, err)
		case http.StatusForbidden:
			return fmt.Errorf("%s: %w: access denied: %w", what, ErrUnauthorized, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s: not found: %w: %w", what, err, layerstore.ErrNotFound)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return fmt.Errorf("%s: not found: %w: %w", what, err, layerstore.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}
