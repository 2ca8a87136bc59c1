//! The way back (docs/fallback.md): the logical slot `dms-migrate cutover` creates on PlanetScale once
//! writes have stopped, from whose consistent LSN the stack's reverse DMS task replays PlanetScale's
//! changes to Aurora. The template's reverse source endpoint names the same slot (`SlotName`); a contract
//! test keeps them equal.

/// The slot's name on PlanetScale. Slot names are per cluster, so one migration at a time may arm the way
/// back on one PlanetScale cluster under this name (`cutover --way-back-slot` takes another).
pub const SLOT: &str = "dms_migrate_way_back";

/// DMS's `PluginName = test-decoding` reads the slot through PostgreSQL's `test_decoding` module.
pub const PLUGIN: &str = "test_decoding";
