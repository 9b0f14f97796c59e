package aws

import (
	"context"
	"errors"
	"time"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// FleetConfig describes an Auto Scaling fleet of appliances behind the NLB.
type FleetConfig struct {
	Size                int           // desired members; 0 = no fleet
	DeregistrationDelay time.Duration // how long a leaving member keeps receiving, for open exchanges
}

func (pl *planner) planFleet(ctx context.Context, subnets []string, healthPort int, prices provision.Prices, est *provision.Estimate) error {
	return errors.New("fleets are not available yet")
}

// fleetMembers counts the fleet's running members other than this appliance.
func (pl *planner) fleetMembers(ctx context.Context) (int, error) { return 0, nil }

func (pl *planner) planFleetCleanup(ctx context.Context, del func(kind, id string, f func(context.Context) error)) error {
	return nil
}

func (pl *planner) planLaunchTemplateCleanup(ctx context.Context, del func(kind, id string, f func(context.Context) error)) error {
	return nil
}

func (e *env) listFleet(ctx context.Context) error { return nil }
