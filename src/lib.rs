//! PhoneRelay: a daemon that bridges a pChat relay to SMS, WhatsApp,
//! Telegram, e-mail and notifications. See `docs/architecture.md`.

pub mod api;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod daemon_tasks;
pub mod endpoints;
pub mod exit;
pub mod fd_limit;
pub mod fetch;
pub mod finish_on_drop;
pub mod inbound;
pub mod instance_lock;
pub mod keys;
pub mod local_key;
pub mod local_socket;
pub mod logging;
pub mod media;
pub mod media_chunks;
pub mod metrics;
pub mod outbox;
pub mod pin_record_key;
pub mod private_files;
pub mod relay;
pub mod retention;
pub mod service_manager;
pub mod store;
pub mod store_lock;
