package pool

import (
	"context"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// dropSubscriptions drops the subscriptions a test left in database name, which
// DROP DATABASE refuses to drop around (55006, "being used by logical replication
// subscription"), even WITH (FORCE). Each is disabled and detached from its slot first,
// so dropping it never connects to its publisher (whose slot, if there is one, stays:
// it belongs to the publisher). pg_subscription is a shared catalog, so the catalog
// connection finds them; they can only be altered and dropped from their own
// database.
func (p *Pool) dropSubscriptions(ctx context.Context, name string) error {
	rows, err := p.cat.Query(ctx, `SELECT s.subname FROM pg_subscription s
		JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = $1`, name)
	subs, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil {
		err = err2
	}
	if err != nil || len(subs) == 0 {
		return p.upstreamErr("look up subscriptions in "+name, err)
	}
	c, err := pgx.ConnectConfig(ctx, p.connConfig(name))
	if err != nil {
		return p.upstreamErr("connect to "+name+" to drop its subscriptions", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, s := range subs {
		id := ident(s)
		for _, sql := range []string{"ALTER SUBSCRIPTION " + id + " DISABLE",
			"ALTER SUBSCRIPTION " + id + " SET (slot_name = NONE)", "DROP SUBSCRIPTION " + id} {
			if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return p.upstreamErr("drop subscription "+s+" in "+name, err)
			}
		}
	}
	p.log.Info("dropped subscriptions a lease left in its clone", zap.String("clone", name), zap.Strings("subscriptions", subs))
	return nil
}
