//! Integration tests: each starts real `circuitd` processes on temp paths and drives them with
//! the SDK or the built `circuit` binary. Build the binaries first (`scripts/test.sh` does).

mod apply;
mod bad_input;
mod channels;
mod cli;
mod cli_chan;
mod cli_mesh;
mod cli_spawn;
mod config_file;
mod dashboard;
mod escaped;
mod events;
mod exits;
mod join_warnings;
mod limits;
mod mesh;
mod netns_install;
mod netns_mesh;
mod netns_replicated;
mod netns_smoke;
mod pipeline;
mod recovery;
mod replicated;
mod security;
mod sets;
mod stdin;
mod supervision;
mod suspicion;
mod top;
mod usage;
