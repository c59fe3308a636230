//! Test fixtures of sgevents shared by the integration tests, the benches and developers: a fake
//! ShotGrid site ([`fake_site`]) that serves an event log over the REST API v1, with gaps and faults
//! on demand.

pub mod fake_site;
