// Package crowd runs simulated devices against a coordinator cluster:
// each Participant takes part in federated rounds with ratings it is given,
// over its own client.Dialer, as fedrec client, the remote simulator and
// the coordinator's QUIC tests do. It is not for apps, which embed package
// client: a Participant keeps no store, asks no consent and enforces no
// privacy policy.
//
// Participants in one process share a ModelCache, which downloads each
// model version once, lends update buffers, and bounds how many train
// and upload at once, and dial over one UDP socket (client.Transport); a
// participant told to check in later holds no connection meanwhile
// (Dialer.Release). Run starts a crowd so: an idle virtual client costs
// its goroutine and its small state, about 6 KB (10,000 in about 60 MiB,
// BenchmarkIdleParticipants). A Participant and the SDK take part in rounds through
// the same code (the check-in, the download, the upload and the secure
// round are the SDK's).
package crowd
