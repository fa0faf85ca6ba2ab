//! Request/reply in the simulator.

use zmesh_core::reqrep::{Config as ReqRepConfig, Delivery};

use super::*;

impl Sim {
    /// The request/reply configuration of a new instance.
    pub(crate) fn reqrep_config(&mut self) -> ReqRepConfig {
        ReqRepConfig {
            first_id: self.rng.gen(),
            ..ReqRepConfig::default()
        }
    }

    /// Checks one request/reply delivery to instance `id`'s application.
    pub(crate) fn delivery(&mut self, id: InstId, d: Delivery<Waiter>) -> Result<(), String> {
        Err(format!(
            "{}: unexpected delivery {d:?}",
            self.insts[&id].name
        ))
    }
}
