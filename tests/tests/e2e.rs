//! Every end-to-end test, in one test binary: each module is one file of tests, run alone
//! with `cargo test -p cup-e2e --test e2e <module>::`. One binary links wasmtime and the
//! rest of the workspace once instead of once per file, and the fixtures shared by several
//! files (`*_common`) are compiled once. Tests of different modules run in parallel threads
//! of the one process, so none may change process-wide state (environment, current
//! directory, umask, signal dispositions) or assume a port, server or child process is the
//! only one.

mod cli_common;
mod cupd_git_common;
mod oci_common;
mod pki_common;

mod abuse_controllers;
mod cli_auth;
mod cli_errors;
mod cli_flipt;
mod cli_offline;
mod cli_quickstart;
mod cli_scenario;
mod component_examples;
mod controller_new;
mod cupd_access;
mod cupd_api;
mod cupd_broken;
mod cupd_code_cache;
mod cupd_concurrency;
mod cupd_config;
mod cupd_flipt;
mod cupd_git;
mod cupd_git_auth;
mod cupd_git_fetch;
mod cupd_git_hooks;
mod cupd_git_hostile;
mod cupd_git_lifecycle;
mod cupd_git_limits;
mod cupd_git_scm;
mod cupd_git_snapshots;
mod cupd_git_ssh;
mod cupd_http;
mod cupd_keyless;
mod cupd_list_bounds;
mod cupd_registry;
mod cupd_reload;
mod cupd_runaway;
mod cupd_sandbox;
mod cupd_signatures;
mod cupd_sweep;
mod cupd_template_glob;
mod cupd_tls;
mod cupd_write_safety;
mod embed_cli;
mod fault_kill_cupd;
mod fault_kill_oci;
mod flipt_component;
mod flipt_example;
mod load_short;
mod oci_auth;
mod oci_bad;
mod oci_compat_trust;
mod oci_faults;
mod oci_hostile_registry;
mod oci_interop;
mod oci_push_pull;
mod oci_referrers;
mod oci_signatures;
mod scm_contract;
mod sign_interop;
