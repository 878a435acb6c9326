//! Shared helpers: connecting a tiberius client to a server address.

use std::net::SocketAddr;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type TestClient = Client<Compat<TcpStream>>;

pub fn config(addr: SocketAddr) -> Config {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server("sa", "Secret#1"));
    config.encryption(EncryptionLevel::NotSupported);
    config.application_name("bakdrop-tests");
    config
}

pub async fn connect(addr: SocketAddr) -> TestClient {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    tcp.set_nodelay(true).expect("nodelay");
    Client::connect(config(addr), tcp.compat_write())
        .await
        .expect("tiberius login")
}
