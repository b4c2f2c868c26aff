//! Database servers from the test image (`images/test/db`), one container per call, with the
//! port published on 127.0.0.1. A start delay makes "the database comes up late" real.

use testcontainers::core::IntoContainerPort as _;
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt as _};

use super::docker::db_image;

/// A running database; the container lives as long as this value.
pub struct Db {
    _container: ContainerAsync<GenericImage>,
    pub port: u16,
    pub password: &'static str,
}

impl Db {
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/app` or `mysql://app:PASSWORD@…/app`.
    pub fn url(&self, scheme: &str) -> String {
        let user = if scheme.starts_with("postgres") { "postgres" } else { "app" };
        format!("{scheme}://{user}:{}@127.0.0.1:{}/app", self.password, self.port)
    }
}

/// PostgreSQL 15 (user `postgres`, database `app`), accepting sessions after `start_delay` s.
pub async fn postgres(password: &'static str, start_delay: u32) -> Db {
    start("postgres.sh", 5432, &[("PG_PASSWORD", password), ("PG_START_DELAY", &start_delay.to_string())], password).await
}

/// MariaDB 10.11 (user `app`, database `app`), accepting sessions after `start_delay` s.
pub async fn mariadb(password: &'static str, start_delay: u32) -> Db {
    start("mariadb.sh", 3306, &[("MY_PASSWORD", password), ("MY_START_DELAY", &start_delay.to_string())], password).await
}

async fn start(script: &str, port: u16, env: &[(&str, &str)], password: &'static str) -> Db {
    let mut request: ContainerRequest<GenericImage> =
        db_image().await.with_exposed_port(port.tcp()).with_entrypoint(&format!("/usr/local/bin/{script}")).into();
    for (key, value) in env {
        request = request.with_env_var(*key, *value);
    }
    let container = request.start().await.expect("starting the database container");
    let port = container.get_host_port_ipv4(port.tcp()).await.expect("the published port");
    Db { _container: container, port, password }
}
