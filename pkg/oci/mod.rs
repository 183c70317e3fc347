//! OCI artifacts: pull and push root images and kernels in little-vm-helper's
//! layout (`/data/images/<name>.qcow2.zst`, `/data/kernels/<version>/...`)
//! without a Docker daemon, with a content-addressed local cache for `lvh run`.

pub(crate) mod auth;
pub(crate) mod blob;
pub(crate) mod bounded;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod kernel_layer;
pub mod limits;
pub(crate) mod manifest;
pub(crate) mod reference;
pub(crate) mod retry;
pub(crate) mod sparse;
pub(crate) mod tags;
pub(crate) mod transport;

pub use error::OciError;
pub use limits::{CapFlags, Limits};
pub use manifest::Platform;
pub use reference::ImageSource;
pub use retry::ATTEMPTS as RETRY_ATTEMPTS;
pub use transport::Transport;

pub(crate) mod catalog;
pub(crate) mod dir_artifact;
pub mod place;
pub(crate) mod pull;
pub(crate) mod push;

pub use catalog::catalog;
pub use dir_artifact::{pull_dir, push_dir, PulledDir};
pub use pull::{
    pull_images, pull_kernel, resolve_image, resolve_image_with, PullOptions, ResolveOptions,
    ResolvedImage,
};
pub use push::{push_image, push_kernel, PushOptions, Pushed};
pub use reference::split_image_name;
