package gcp

// FleetConfig describes a regional managed instance group of collectors.
type FleetConfig struct {
	Size int // desired members; 0 = no fleet
}
