// Package handoff keeps each key's count with its owner as the members of
// the cluster change, and a copy of it with the member that would own the
// key if its owner failed: the Keeper hands counts over on joins and
// leaves, backs up the counts that changed to each heir's own queue, holds
// the copies other members send it, and adds them to the keys' counts when
// their sender fails, leaves without handing over, or restarts. It knows
// the ring and the peers through package ownership, and the wire through
// the Mover interface it defines (package peer's Client is one).
package handoff
