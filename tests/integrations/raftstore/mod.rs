mod test_admin;
mod test_errors;
mod test_failover;
mod test_lease_read;
mod test_membership;
mod test_pd;
mod test_read;
mod test_replication;
