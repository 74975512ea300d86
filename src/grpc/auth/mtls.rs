//! Scopes of a client certificate: the values of its subject's OU attributes
//! (e.g. `OU=sessions:admin`). The certificate itself was verified by TLS.

use tonic::transport::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

pub(super) fn scopes(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    parsed
        .subject()
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok().map(str::to_owned))
        .collect()
}
