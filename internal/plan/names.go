package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FederatedTrustDomainName is the stable name of the
// ClusterFederatedTrustDomain by which zone trusts a peer trust domain:
// "spirefed.<zone>.<td>" (a cluster may host several zones), or, when that
// is not a valid name (an underscore, a label ending in '-', too long),
// "spirefed.<zone>.<hash of td>".
func FederatedTrustDomainName(zone, trustDomain string) string {
	if isPlainName(zone, trustDomain, isDNSLabels(zone) && isDNSLabels(trustDomain)) {
		return federatedTrustDomainPrefix + zone + "." + trustDomain
	}
	return federatedTrustDomainPrefix + zone + "." + trustDomainHash(trustDomain)
}

const federatedTrustDomainPrefix = "spirefed."

// isPlainName reports whether "spirefed.<zone>.<td>" is a valid name,
// told whether zone and td are both dot-separated DNS labels: the name's
// labels are "spirefed", zone's and td's, so only its length is left to
// check.
func isPlainName(zone, trustDomain string, dnsLabels bool) bool {
	return dnsLabels && len(federatedTrustDomainPrefix)+len(zone)+1+len(trustDomain) <= validation.DNS1123SubdomainMaxLength
}

// trustDomainHash stands for a trust domain in a name that cannot hold it.
func trustDomainHash(trustDomain string) string {
	sum := sha256.Sum256([]byte(trustDomain))
	return hex.EncodeToString(sum[:8])
}

// pairName is FederatedTrustDomainName(from's name, to's trust domain),
// from what the planner knows of each zone.
func pairName(from, to *member) string {
	return federatedTrustDomainPrefix + from.zone.Name + "." + pairNameSuffix(from, to)
}

// pairNameSuffix is what follows "spirefed.<zone>." in pairName.
func pairNameSuffix(from, to *member) string {
	if isPlainName(from.zone.Name, to.zone.TrustDomain, from.dnsName && to.dnsTrustDomain) {
		return to.zone.TrustDomain
	}
	if to.trustDomainHash == "" {
		to.trustDomainHash = trustDomainHash(to.zone.TrustDomain)
	}
	return to.trustDomainHash
}

// hasPairName reports whether name is pairName(from, to) without building
// that name: a pass checks the name of every pair it reuses (39,800 at 200
// zones).
func hasPairName(name string, from, to *member) bool {
	zone, suffix := from.zone.Name, pairNameSuffix(from, to)
	rest, ok := strings.CutPrefix(name, federatedTrustDomainPrefix)
	return ok && len(rest) == len(zone)+1+len(suffix) && rest[:len(zone)] == zone && rest[len(zone)] == '.' && rest[len(zone)+1:] == suffix
}

// isDNS1123Subdomain is validation.IsDNS1123Subdomain without its regular
// expression.
func isDNS1123Subdomain(name string) bool {
	return len(name) > 0 && len(name) <= validation.DNS1123SubdomainMaxLength && isDNSLabels(name)
}

// isDNSLabels reports whether s is dot-separated DNS labels (lowercase
// alphanumerics and '-', starting and ending with an alphanumeric),
// whatever its length.
func isDNSLabels(s string) bool {
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || !alphanumeric(label[0]) || !alphanumeric(label[len(label)-1]) {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !alphanumeric(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

func alphanumeric(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
