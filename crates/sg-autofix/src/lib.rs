//! sg-autofix: adds the one missing inbound rule from the DMS replication instance's security group to the
//! source database's, tagged so stack-cleanup removes exactly what was added.

pub mod handler;
pub mod resolve;
