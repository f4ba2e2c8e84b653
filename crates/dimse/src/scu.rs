//! The C-STORE SCU of C-MOVE: our association to the move destination (dicom-ul's client
//! association over TCP), proposing one presentation context per SOP class and stored
//! transfer syntax of the instances to send, plus one uncompressed context per SOP class for
//! conversions; and the C-STORE-RSPs read back from it.

use std::collections::BTreeMap;
use std::time::Duration;

use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use radport_catalog::MoveDestination;
use tokio::net::TcpStream;

use crate::command::{field, Command};
use crate::outgoing::{Item, Offer, UNCOMPRESSED};

/// Most presentation contexts an association may propose (PS3.8: IDs 1..=255, odd).
const MAX_CONTEXTS: usize = 128;

/// Largest PDU we accept from a destination: it only sends C-STORE-RSPs.
const RESPONSE_PDU_LENGTH: u32 = 64 * 1024;

/// An association to a C-MOVE destination.
pub(crate) struct Destination {
    pub association: AsyncClientAssociation<TcpStream>,
    pub offers: Vec<Offer>,
    command: Vec<u8>,
}

/// The contexts to propose for `items`: each SOP class in each stored transfer syntax, then
/// (room permitting) each SOP class in the uncompressed syntaxes.
fn proposals(items: &[Item]) -> Vec<(String, Vec<String>)> {
    let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for item in items {
        let syntaxes = by_class.entry(item.sop_class_uid.as_str()).or_default();
        if !syntaxes.contains(&item.transfer_syntax_uid.as_str()) {
            syntaxes.push(item.transfer_syntax_uid.as_str());
        }
    }
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (class, syntaxes) in &by_class {
        for ts in syntaxes {
            out.push((class.to_string(), vec![ts.to_string()]));
        }
    }
    for class in by_class.keys() {
        out.push((
            class.to_string(),
            UNCOMPRESSED.iter().map(|s| s.to_string()).collect(),
        ));
    }
    out.truncate(MAX_CONTEXTS);
    out
}

/// Opens an association to `destination` as `calling_ae_title`.
pub(crate) async fn connect(
    destination: &MoveDestination,
    calling_ae_title: &str,
    items: &[Item],
    timeout: Duration,
) -> Result<Destination, String> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae_title.to_string())
        .called_ae_title(destination.ae_title.clone())
        .max_pdu_length(RESPONSE_PDU_LENGTH)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .connection_timeout(timeout.min(Duration::from_secs(30)));
    for (class, syntaxes) in proposals(items) {
        options = options.with_presentation_context(class, syntaxes);
    }
    let address = format!("{}:{}", destination.host, destination.port);
    let association = tokio::time::timeout(timeout, options.establish_async(address.as_str()))
        .await
        .map_err(|_| {
            format!(
                "no association with {} within {timeout:?}",
                destination.ae_title
            )
        })?
        .map_err(|e| {
            format!(
                "cannot open an association with {}: {e}",
                destination.ae_title
            )
        })?;
    let mut association = association;
    let _ = association.inner_stream().set_nodelay(true);
    let offers = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| Offer {
            id: pc.id,
            abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_string(),
            transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
        })
        .collect();
    Ok(Destination {
        association,
        offers,
        command: Vec::new(),
    })
}

impl Destination {
    /// The peer's maximum PDU length.
    pub fn max_pdu(&self) -> u32 {
        self.association.acceptor_max_pdu_length()
    }

    /// Waits for the C-STORE-RSP to `message_id`; its status.
    pub async fn store_response(&mut self, message_id: u16) -> Result<u16, String> {
        loop {
            crate::quickack(self.association.inner_stream());
            let pdu = self
                .association
                .receive()
                .await
                .map_err(|e| format!("no C-STORE-RSP: {e}"))?;
            let Pdu::PData { data } = pdu else {
                return Err(format!("destination sent {pdu:?} instead of a C-STORE-RSP"));
            };
            for pdv in data {
                if pdv.value_type != PDataValueType::Command {
                    return Err("destination sent a data set".into());
                }
                self.command.extend_from_slice(&pdv.data);
                if self.command.len() > 64 * 1024 {
                    return Err("C-STORE-RSP larger than 64 KiB".into());
                }
                if !pdv.is_last {
                    continue;
                }
                let bytes = std::mem::take(&mut self.command);
                let command = Command::decode(&bytes).map_err(|e| e.to_string())?;
                if command.field == field::C_STORE_RSP
                    && command.message_id_being_responded_to == Some(message_id)
                {
                    return Ok(command.status.unwrap_or(0xFFFF));
                }
                return Err(format!(
                    "destination sent command 0x{:04X} instead of the C-STORE-RSP",
                    command.field
                ));
            }
        }
    }

    /// Releases the association (an abort if the release fails).
    pub async fn release(self) {
        if let Err(e) = self.association.release().await {
            tracing::debug!(error = %e, "releasing the C-MOVE destination's association failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_cover_stored_syntaxes_then_uncompressed() {
        let item = |class: &str, ts: &str| Item {
            sop_class_uid: class.into(),
            sop_instance_uid: "1".into(),
            transfer_syntax_uid: ts.into(),
            object_key: "k".into(),
            size: 1,
            pixels: None,
        };
        let p = proposals(&[
            item("CT", "1.2.840.10008.1.2.4.70"),
            item("CT", "1.2.840.10008.1.2.4.70"),
            item("MR", "1.2.840.10008.1.2.1"),
        ]);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], ("CT".into(), vec!["1.2.840.10008.1.2.4.70".into()]));
        assert_eq!(p[2].0, "CT");
        assert_eq!(p[2].1.len(), 3);
    }
}
