//! OCI artifacts: pull and push root images and kernels in little-vm-helper's
//! layout (`/data/images/<name>.qcow2.zst`, `/data/kernels/<version>/...`)
//! without a Docker daemon, with a content-addressed local cache for `lvh run`.

pub mod auth;
pub mod blob;
pub mod error;
pub mod extract;
pub mod kernel_layer;
pub mod manifest;
pub mod reference;
pub mod sparse;
pub mod tags;
pub mod transport;

pub use error::OciError;
pub use manifest::Platform;
pub use reference::ImageSource;
pub use transport::Transport;

pub mod catalog;
pub mod place;
pub mod pull;
pub mod push;

pub use catalog::catalog;
pub use pull::{
    pull_images, pull_kernel, resolve_image, resolve_image_with, split_image_name, PullOptions,
    ResolveOptions, ResolvedImage,
};
pub use push::{push_image, push_kernel, PushOptions, Pushed};
