package coordinator

import "github.com/fedrec/fedrec/coordinator/deviceapi"

// The device-facing server (the QUIC and WebTransport listeners, the
// admission of requests, the authentication of peers) is package
// deviceapi; the node is its Handler. These names keep the coordinator's
// API as it was.

// Peer describes who sent a request (see deviceapi.Peer).
type Peer = deviceapi.Peer

// The defaults of Config's admission limits (see package deviceapi).
const (
	DefaultMemoryBudget        = deviceapi.DefaultMemoryBudget
	DefaultMaxUploadsPerDevice = deviceapi.DefaultMaxUploadsPerDevice
	DefaultMinUploadRate       = deviceapi.DefaultMinUploadRate
	DefaultRateGrace           = deviceapi.DefaultRateGrace
	DefaultMaxDeviceMemory     = deviceapi.DefaultMaxDeviceMemory
	DefaultDeviceRequestRate   = deviceapi.DefaultDeviceRequestRate
	DefaultDeviceRequestBurst  = deviceapi.DefaultDeviceRequestBurst
)
