//! petrel-sim: the simulation harness.
