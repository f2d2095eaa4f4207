package snapshotter

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-dev/strata/layerstore"
)

// ErrPrecondition: the snapshot is not in a state that allows the operation
// (committing a committed one, removing one that has children).
var ErrPrecondition = errors.New("failed precondition")

// toGRPC maps an error to the status code containerd's errdefs expects.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, layerstore.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, layerstore.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, layerstore.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrPrecondition), errors.Is(err, layerstore.ErrInUse):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}

var errNoInfo = fmt.Errorf("update: no snapshot info: %w", layerstore.ErrInvalid)
