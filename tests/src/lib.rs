//! Test fixtures of sgevents shared by the integration tests, the benches and developers: a fake
//! ShotGrid site ([`fake_site`]) that serves an event log over the REST API v1, with gaps and faults
//! on demand, and entities over api3's JSON-RPC to `shotgun_api3`; and a fake SMTP server ([`smtp`])
//! that records the mail it is sent.

pub mod fake_site;
pub mod smtp;
