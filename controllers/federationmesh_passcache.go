package controllers

import (
	"maps"
	"sync"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// passCache holds what one mesh pass derives from its plan and members
// for every zone: each peer's authorities as PEM (parsed from its SPIFFE
// bundle once, not once per zone that trusts it: at 200 zones that was
// 39,800 bundle parses a pass, 40 % of a rotation's CPU) and the plan's
// links by trusting zone (not a scan of every link per zone). It is
// filled on first use, by the mesh integration phase, which handles one
// zone after another; it is not safe for concurrent use.
type passCache struct {
	peerPEMs  map[string]string
	linksFrom map[string][]plan.Link
}

// peerPEM is meshintegration.CurrentPEM(zone), computed once per pass.
func (s *meshScope) peerPEM(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	if s.passCache.peerPEMs == nil {
		s.passCache.peerPEMs = map[string]string{}
	}
	pem, known := s.passCache.peerPEMs[zone.Name]
	if !known {
		pem = meshintegration.CurrentPEM(zone)
		s.passCache.peerPEMs[zone.Name] = pem
	}
	return pem
}

// linksFrom are the plan's links in which zone trusts a peer, in the
// plan's order.
func (s *meshScope) linksFrom(zone string) []plan.Link {
	if s.passCache.linksFrom == nil {
		s.passCache.linksFrom = map[string][]plan.Link{}
		for _, link := range s.plan.Links {
			s.passCache.linksFrom[link.From] = append(s.passCache.linksFrom[link.From], link)
		}
	}
	return s.passCache.linksFrom[zone]
}

// lastPlans keeps each mesh's latest plan, whose objects the next pass
// reuses where nothing changed (plan.Input.Previous): planning a 200-zone
// mesh builds 39,800 objects, and a rotation changes 199 of them.
type lastPlans struct {
	mu    sync.Mutex
	plans map[string]*plan.Plan
}

func (l *lastPlans) get(mesh string) *plan.Plan {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.plans[mesh]
}

func (l *lastPlans) set(mesh string, latest plan.Plan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.plans == nil {
		l.plans = map[string]*plan.Plan{}
	}
	l.plans[mesh] = &latest
}

func (l *lastPlans) forget(mesh string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.plans, mesh)
}

// settledApplies keeps, per mesh and cluster of a member zone, the last
// apply that found the cluster as planned (apply.Settled): the next pass
// that reads the same objects there and plans the same ones skips
// comparing them.
type settledApplies struct {
	mu      sync.Mutex
	applies map[settledKey]*apply.Settled
}

// settledKey names one cluster of one zone of one mesh.
type settledKey struct{ mesh, zone, cluster string }

func (s *settledApplies) get(key settledKey) *apply.Settled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applies[key]
}

// set remembers settled; nil forgets what was.
func (s *settledApplies) set(key settledKey, settled *apply.Settled) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if settled == nil {
		delete(s.applies, key)
		return
	}
	if s.applies == nil {
		s.applies = map[settledKey]*apply.Settled{}
	}
	s.applies[key] = settled
}

func (s *settledApplies) forget(mesh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.applies, func(key settledKey, _ *apply.Settled) bool { return key.mesh == mesh })
}
