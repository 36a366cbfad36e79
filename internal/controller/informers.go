package controller

import (
	"context"
	"fmt"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/readiness"
)

// storeOf is the store of a cache's informer for one kind, looked up on
// first use: a binding pass reads thousands of pods, and finding the
// informer resolves the kind through the scheme and takes a lock.
type storeOf struct {
	cache cache.Cache
	kind  client.Object
	found atomic.Pointer[toolscache.Indexer]
}

func (s *storeOf) store(ctx context.Context) (toolscache.Indexer, error) {
	if store := s.found.Load(); store != nil {
		return *store, nil
	}
	found, err := informerStore(ctx, s.cache, s.kind)
	if err != nil {
		return nil, err
	}
	s.found.Store(&found)
	return found, nil
}

func (s *storeOf) get(ctx context.Context, key string) (any, bool) {
	store, err := s.store(ctx)
	if err != nil {
		return nil, false
	}
	obj, ok, err := store.GetByKey(key)
	return obj, ok && err == nil
}

// byIndex lists the objects under an index's value.
func (s *storeOf) byIndex(ctx context.Context, index, value string) ([]any, error) {
	store, err := s.store(ctx)
	if err != nil {
		return nil, err
	}
	return store.ByIndex(index, value)
}

// informerStore is the store of c's informer for kind, with its indexes.
func informerStore(ctx context.Context, c cache.Cache, kind client.Object) (toolscache.Indexer, error) {
	inf, err := c.GetInformer(ctx, kind)
	if err != nil {
		return nil, err
	}
	store, err := indexerOf(inf)
	if err != nil {
		return nil, fmt.Errorf("%T: %w", kind, err)
	}
	return store, nil
}

// indexServicesBySelector adds the gate's index of Services to the
// cache's Service informer and returns the gate's look-up through it.
func indexServicesBySelector(ctx context.Context, c cache.Cache) (readiness.ServicesUnder, error) {
	inf, err := c.GetInformer(ctx, &corev1.Service{})
	if err != nil {
		return nil, err
	}
	if err := inf.AddIndexers(readiness.ServiceSelectorIndexers()); err != nil {
		return nil, err
	}
	indexer, err := indexerOf(inf)
	if err != nil {
		return nil, err
	}
	return readiness.IndexedServices(indexer), nil
}

// indexerOf is the informer's own store with its indexes; controller-
// runtime's Informer interface does not show it, its informers do.
func indexerOf(inf cache.Informer) (toolscache.Indexer, error) {
	indexed, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return nil, fmt.Errorf("the informer (%T) does not show its store", inf)
	}
	return indexed.GetIndexer(), nil
}
