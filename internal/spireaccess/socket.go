package spireaccess

import (
	"context"
	"fmt"
	"sync"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// maxMessageSize bounds one answer of the SPIRE server.
const maxMessageSize = 16 << 20

// Sockets dials SPIRE servers' admin sockets and keeps one connection per
// socket path. The admin socket is a local unix socket: the file system's
// permissions are its authentication, as for the spire-server command
// itself, so no transport security is layered on it.
type Sockets struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// Server returns the server behind a socket path.
func (s *Sockets) Server(path string) (Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if conn, ok := s.conns[path]; ok {
		return &socketServer{conn: conn, path: path}, nil
	}
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize)))
	if err != nil {
		return nil, fmt.Errorf("dialing SPIRE server socket %s: %w", path, err)
	}
	if s.conns == nil {
		s.conns = map[string]*grpc.ClientConn{}
	}
	s.conns[path] = conn
	return &socketServer{conn: conn, path: path}, nil
}

// Close closes every connection.
func (s *Sockets) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for path, conn := range s.conns {
		_ = conn.Close()
		delete(s.conns, path)
	}
}

type socketServer struct {
	conn *grpc.ClientConn
	path string
}

func (s *socketServer) TrustDomain(ctx context.Context) (string, error) {
	own, err := bundlev1.NewBundleClient(s.conn).GetBundle(ctx, &bundlev1.GetBundleRequest{OutputMask: &types.BundleMask{}})
	if err != nil {
		return "", fmt.Errorf("reading the server's own bundle through %s: %w", s.path, err)
	}
	return own.GetTrustDomain(), nil
}

func (s *socketServer) FederatedBundles(ctx context.Context) (map[string]HeldBundle, error) {
	client := bundlev1.NewBundleClient(s.conn)
	held := map[string]HeldBundle{}
	pageToken := ""
	for pages := 0; ; pages++ {
		if pages > maxBundles/500 {
			return nil, fmt.Errorf("listing federated bundles through %s: more than %d pages", s.path, pages)
		}
		page, err := client.ListFederatedBundles(ctx, listRequest(pageToken))
		if err != nil {
			return nil, fmt.Errorf("listing federated bundles through %s: %w", s.path, err)
		}
		if err := heldBundles(page.GetBundles(), held); err != nil {
			return nil, err
		}
		next := page.GetNextPageToken()
		if next == "" {
			return held, nil
		}
		if next == pageToken {
			return nil, fmt.Errorf("listing federated bundles through %s: the server repeats page token %q", s.path, next)
		}
		pageToken = next
	}
}

func (s *socketServer) RefreshBundle(ctx context.Context, trustDomain string) error {
	_, err := trustdomainv1.NewTrustDomainClient(s.conn).RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: trustDomain})
	if err != nil {
		return fmt.Errorf("refreshing the bundle of %s through %s: %w", trustDomain, s.path, err)
	}
	return nil
}
