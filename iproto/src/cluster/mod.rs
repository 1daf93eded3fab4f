//! One client over many servers: server lists in MR::IProto's form and the balancers that
//! place keys where MR::IProto places them.

mod balance;
mod list;

pub use balance::{Balance, Balancer, BalancerFactory};
pub use list::{ClusterError, ServerAddr, ServerList, ServerSpec, MAX_WEIGHT};
