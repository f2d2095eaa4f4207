package snapshotter

import (
	"context"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service is the gRPC face of a Snapshotter: containerd's
// containerd.services.snapshots.v1.Snapshots, which containerd calls for a
// proxy snapshotter plugin. The request's snapshotter name is ignored: one
// server is one snapshotter.
type Service struct {
	snapshotsapi.UnimplementedSnapshotsServer
	sn *Snapshotter
}

// NewService serves sn.
func NewService(sn *Snapshotter) *Service { return &Service{sn: sn} }

// Register adds the service to a gRPC server.
func (v *Service) Register(g *grpc.Server) { snapshotsapi.RegisterSnapshotsServer(g, v) }

func (v *Service) Prepare(ctx context.Context, r *snapshotsapi.PrepareSnapshotRequest) (*snapshotsapi.PrepareSnapshotResponse, error) {
	m, err := v.sn.Prepare(ctx, r.Key, r.Parent, r.Labels)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &snapshotsapi.PrepareSnapshotResponse{Mounts: toMounts(m)}, nil
}

func (v *Service) View(ctx context.Context, r *snapshotsapi.ViewSnapshotRequest) (*snapshotsapi.ViewSnapshotResponse, error) {
	m, err := v.sn.View(ctx, r.Key, r.Parent, r.Labels)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &snapshotsapi.ViewSnapshotResponse{Mounts: toMounts(m)}, nil
}

func (v *Service) Mounts(ctx context.Context, r *snapshotsapi.MountsRequest) (*snapshotsapi.MountsResponse, error) {
	m, err := v.sn.Mounts(ctx, r.Key)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &snapshotsapi.MountsResponse{Mounts: toMounts(m)}, nil
}

func (v *Service) Commit(ctx context.Context, r *snapshotsapi.CommitSnapshotRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, toGRPC(v.sn.Commit(ctx, r.Name, r.Key, r.Labels))
}

func (v *Service) Remove(ctx context.Context, r *snapshotsapi.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, toGRPC(v.sn.Remove(ctx, r.Key))
}

func (v *Service) Stat(ctx context.Context, r *snapshotsapi.StatSnapshotRequest) (*snapshotsapi.StatSnapshotResponse, error) {
	i, err := v.sn.Stat(ctx, r.Key)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &snapshotsapi.StatSnapshotResponse{Info: toInfo(i)}, nil
}

func (v *Service) Update(ctx context.Context, r *snapshotsapi.UpdateSnapshotRequest) (*snapshotsapi.UpdateSnapshotResponse, error) {
	if r.Info == nil {
		return nil, toGRPC(errNoInfo)
	}
	in := Info{Name: r.Info.Name, Labels: r.Info.Labels}
	i, err := v.sn.Update(ctx, in, r.UpdateMask.GetPaths()...)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &snapshotsapi.UpdateSnapshotResponse{Info: toInfo(i)}, nil
}

func (v *Service) List(r *snapshotsapi.ListSnapshotsRequest, srv snapshotsapi.Snapshots_ListServer) error {
	// Batches, as containerd's own service sends them.
	var batch []*snapshotsapi.Info
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := srv.Send(&snapshotsapi.ListSnapshotsResponse{Info: batch})
		batch = nil
		return err
	}
	err := v.sn.Walk(srv.Context(), func(i Info) error {
		batch = append(batch, toInfo(i))
		if len(batch) >= 100 {
			return flush()
		}
		return nil
	}, r.Filters...)
	if err != nil {
		return toGRPC(err)
	}
	return toGRPC(flush())
}

func (v *Service) Usage(ctx context.Context, r *snapshotsapi.UsageRequest) (*snapshotsapi.UsageResponse, error) {
	u, err := v.sn.Usage(ctx, r.Key)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &snapshotsapi.UsageResponse{Size: u.Size, Inodes: u.Inodes}, nil
}

// Cleanup has nothing to do: removals free their space at once.
func (v *Service) Cleanup(ctx context.Context, r *snapshotsapi.CleanupRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func toMounts(ms []Mount) []*types.Mount {
	out := make([]*types.Mount, len(ms))
	for i, m := range ms {
		out[i] = &types.Mount{Type: m.Type, Source: m.Source, Options: m.Options}
	}
	return out
}

func toInfo(i Info) *snapshotsapi.Info {
	return &snapshotsapi.Info{
		Name:      i.Name,
		Parent:    i.Parent,
		Kind:      snapshotsapi.Kind(i.Kind),
		Labels:    i.Labels,
		CreatedAt: timestamppb.New(i.Created),
		UpdatedAt: timestamppb.New(i.Updated),
	}
}
