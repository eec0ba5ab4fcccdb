package wire

import "crypto/sha256"

// roundTerms are the terms of a round that every plan of the round
// repeats, alike for every device, from the round's manifest (OpenRound).
// Their encoding is part of the protocol: TermsDigest hashes it.
type roundTerms struct {
	Round   uint64        `msgpack:"round"`
	Model   uint64        `msgpack:"model"`
	Digest  []byte        `msgpack:"digest"`
	Clip    float64       `msgpack:"clip"`
	Privacy PrivacyParams `msgpack:"privacy"`
	SecAgg  *SecAggParams `msgpack:"secagg,omitempty"`
}

const labelTerms = "fedrec/v1 round-terms\x00"

// digest is the SHA-256 of a label and the terms' msgpack encoding.
func (t *roundTerms) digest() [sha256.Size]byte {
	b, err := marshal(t)
	if err != nil {
		panic(err) // plain structs of numbers and byte strings
	}
	h := sha256.New()
	h.Write([]byte(labelTerms))
	h.Write(b)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// TermsDigest is the digest of the terms the plan announces for its
// round: round, model version and digest, clip, privacy and
// secure-aggregation parameters (which, in a signed round, bind the cohort
// through the graph seed). Every device of the round (of one node's
// group, in a round split among the nodes) gets the same; a device keeps
// it in its record of the round, and anyone holding the committed
// manifest can compare it with the manifest's TermsDigest
// (GroupTermsDigest).
func (m *Plan) TermsDigest() [sha256.Size]byte {
	t := roundTerms{Round: m.Round, Model: m.Model, Digest: m.Digest, Clip: m.Clip, Privacy: m.Privacy, SecAgg: m.SecAgg}
	return t.digest()
}

// TermsDigest is the digest of the terms the manifest's plans announce
// (Plan.TermsDigest).
func (m *OpenRound) TermsDigest() [sha256.Size]byte {
	t := roundTerms{Round: m.Round, Model: m.Model, Digest: m.Digest, Clip: m.Clip, Privacy: m.Privacy, SecAgg: m.SecAgg}
	return t.digest()
}

// GroupTermsDigest is the digest of the terms the plans of node's group
// announce: TermsDigest with the group's secure aggregation in a round
// split among the nodes (RoundGroup.SecAgg), the round's otherwise.
func (m *OpenRound) GroupTermsDigest(node string) [sha256.Size]byte {
	t := roundTerms{Round: m.Round, Model: m.Model, Digest: m.Digest, Clip: m.Clip, Privacy: m.Privacy, SecAgg: m.SecAgg}
	for _, g := range m.Groups {
		if g.Node == node && g.SecAgg != nil {
			t.SecAgg = g.SecAgg
		}
	}
	return t.digest()
}
