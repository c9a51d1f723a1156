//! Kiln operator library.

pub mod config;
pub mod controller;
pub mod digest;
pub mod dockerfile;
pub mod facts;
pub mod job;
pub mod leader;
pub mod lock;
pub mod metrics;
pub mod mirror;
pub mod plan;
pub mod pods;
pub mod report;
pub mod slug;
pub mod source;
pub mod storage;
pub mod tags;
