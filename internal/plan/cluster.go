package plan

import "strings"

// ForCluster is a zone plan as one cluster of the zone's trust domain
// needs it (a nested child, an HA side): the same objects, carrying that
// cluster's className, with idPath inserted after the trust domain of
// every SPIFFE ID (template). The zone plan is not changed; with the
// zone's own className and no idPath it is returned as is.
func ForCluster(zonePlan *ZonePlan, className, idPath string) *ZonePlan {
	if zonePlan == nil {
		return nil
	}
	if idPath == "" && zonePlanClassName(zonePlan) == className {
		return zonePlan
	}
	out := &ZonePlan{Zone: zonePlan.Zone, KeepFederatedTrustDomains: zonePlan.KeepFederatedTrustDomains}
	for _, cftd := range zonePlan.FederatedTrustDomains {
		copied := cftd.DeepCopy()
		copied.Spec.ClassName = className
		out.FederatedTrustDomains = append(out.FederatedTrustDomains, copied)
	}
	for _, id := range zonePlan.SPIFFEIDs {
		copied := id.DeepCopy()
		copied.Spec.ClassName = className
		copied.Spec.SPIFFEIDTemplate = WithIDPath(copied.Spec.SPIFFEIDTemplate, idPath)
		out.SPIFFEIDs = append(out.SPIFFEIDs, copied)
	}
	for _, entry := range zonePlan.StaticEntries {
		copied := entry.DeepCopy()
		copied.Spec.ClassName = className
		copied.Spec.SPIFFEID = WithIDPath(copied.Spec.SPIFFEID, idPath)
		out.StaticEntries = append(out.StaticEntries, copied)
	}
	return out
}

// zonePlanClassName is the className the plan's objects carry, or "" for
// an empty plan.
func zonePlanClassName(zonePlan *ZonePlan) string {
	switch {
	case len(zonePlan.FederatedTrustDomains) > 0:
		return zonePlan.FederatedTrustDomains[0].Spec.ClassName
	case len(zonePlan.SPIFFEIDs) > 0:
		return zonePlan.SPIFFEIDs[0].Spec.ClassName
	case len(zonePlan.StaticEntries) > 0:
		return zonePlan.StaticEntries[0].Spec.ClassName
	}
	return ""
}

// WithIDPath inserts idPath after the trust domain of a SPIFFE ID or ID
// template ("spiffe://{{ .TrustDomain }}/ns/x" with "/cluster-a" gives
// "spiffe://{{ .TrustDomain }}/cluster-a/ns/x"). Anything that does not
// start with spiffe:// is returned unchanged.
func WithIDPath(id, idPath string) string {
	const scheme = "spiffe://"
	if idPath == "" || !strings.HasPrefix(id, scheme) {
		return id
	}
	rest := id[len(scheme):]
	// The trust domain part ends at the first '/' outside a template
	// action ("{{ ... }}" may hold anything).
	depth := 0
	for i := 0; i < len(rest); i++ {
		switch {
		case strings.HasPrefix(rest[i:], "{{"):
			depth++
			i++
		case strings.HasPrefix(rest[i:], "}}") && depth > 0:
			depth--
			i++
		case rest[i] == '/' && depth == 0:
			return scheme + rest[:i] + idPath + rest[i:]
		}
	}
	return id + idPath
}
