//! The parser against the real backups in `tests/fixtures/bak`, field by field against the
//! values listed in that folder's MANIFEST.md (transcribed below), from the bytes the pipeline
//! reads: the first 1 MiB and the last 64 KiB of each file.

use bakdrop_core::backup::{
    parse, BackupFile, BackupSet, Container, FileType, ParseError, HEAD_LIMIT, TAIL_LIMIT,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn head(data: &[u8]) -> &[u8] {
    &data[..data.len().min(HEAD_LIMIT)]
}

fn tail(data: &[u8]) -> &[u8] {
    &data[data.len().saturating_sub(TAIL_LIMIT)..]
}

fn parse_fixture(data: &[u8]) -> Result<BackupFile, ParseError> {
    parse(head(data), Some(tail(data)), data.len() as u64)
}

struct Fixture {
    file: &'static str,
    compressed: bool,
    block_size: u32,
    media_date: &'static str,
    media_set_id: &'static str,
    family_count: u16,
    family_sequence: u16,
    password_protected: bool,
    sets_found: u32,
    last_eset_number: u32,
    set_map_entries: u32,
    sets: &'static [Set],
}

struct Set {
    position: u16,
    backup_type: &'static str,
    database_name: &'static str,
    server_name: &'static str,
    machine_name: &'static str,
    user_name: &'static str,
    backup_name: &'static str,
    software_version: &'static str,
    database_version: u16,
    compatibility_level: u8,
    sort_order: u8,
    unicode_locale_id: u32,
    unicode_comparison_style: u32,
    time_zone: i8,
    first_lsn: &'static str,
    last_lsn: &'static str,
    checkpoint_lsn: &'static str,
    database_backup_lsn: &'static str,
    backup_set_guid: &'static str,
    family_guid: &'static str,
    recovery_fork_id: &'static str,
    /// "0" in the manifest: no fork point (`None` here, NULL in RESTORE HEADERONLY).
    fork_point_lsn: &'static str,
    differential_base_lsn: Option<&'static str>,
    differential_base_guid: Option<&'static str>,
    database_creation_date: &'static str,
    backup_start_date: &'static str,
    /// `None`: the manifest did not decode it (compressed files).
    backup_finish_date: Option<&'static str>,
    backup_size: Option<u64>,
    /// The partial size in the head copy of the metadata: must NOT be reported.
    head_copy_size: u64,
    has_checksums: bool,
    /// (FileId, type letter, logical name, physical name)
    files: &'static [(u32, &'static str, &'static str, &'static str)],
}

/// MANIFEST.md, "Decoded header values per file".
const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "sql2008r2_diff_checksum_db2.bak",
        compressed: false,
        block_size: 512,
        media_date: "2017-05-18T04:18:19",
        media_set_id: "b0a8a6f3-b8a7-456e-948c-7b3bffa42480",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "I",
                database_name: "db2",
                server_name: "SQL2008",
                machine_name: "SQL2008",
                user_name: "BASE\\sqlserver",
                backup_name: "",
                software_version: "10.50.1600",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 8,
                first_lsn: "22000000034900034",
                last_lsn: "22000000036400001",
                checkpoint_lsn: "22000000034900034",
                database_backup_lsn: "22000000032600037",
                backup_set_guid: "67931cab-633a-4599-8a1d-35e94018d51c",
                family_guid: "081285a7-2314-4f60-b657-e39b6a77b015",
                recovery_fork_id: "081285a7-2314-4f60-b657-e39b6a77b015",
                fork_point_lsn: "0",
                differential_base_lsn: Some("22000000032600037"),
                differential_base_guid: Some("1604d529-b5bb-481a-80e1-fdc4cc312de8"),
                database_creation_date: "2017-02-06T11:58:24",
                backup_start_date: "2017-05-18T04:18:19",
                backup_finish_date: Some("2017-05-18T04:18:19"),
                backup_size: Some(340992),
                head_copy_size: 269824,
                has_checksums: true,
                files: &[(1, "D", "FullRecoveryModel", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.MSSQLSERVER\\MSSQL\\DATA\\FullRecoveryModel.mdf"), (2, "L", "FullRecoveryModel_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.MSSQLSERVER\\MSSQL\\DATA\\FullRecoveryModel_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_diff_difftest-diff1.bak",
        compressed: false,
        block_size: 512,
        media_date: "2018-12-21T11:26:31",
        media_set_id: "18d178a8-5e6d-4d24-b162-c9a304f9ea1e",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "I",
                database_name: "doublediff",
                server_name: "WIN-JNMR8KM0U3B\\SQL2008R2SP2",
                machine_name: "WIN-JNMR8KM0U3B",
                user_name: "WIN-JNMR8KM0U3B\\Administrator",
                backup_name: "",
                software_version: "10.50.1600",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 0,
                first_lsn: "24000000011700034",
                last_lsn: "24000000013200001",
                checkpoint_lsn: "24000000011700034",
                database_backup_lsn: "24000000006800099",
                backup_set_guid: "46b619d2-0f7d-4b9d-bbf8-acd5affc4767",
                family_guid: "4a416c85-d28e-4f91-ade2-8276ceae8725",
                recovery_fork_id: "4a416c85-d28e-4f91-ade2-8276ceae8725",
                fork_point_lsn: "0",
                differential_base_lsn: Some("24000000006800099"),
                differential_base_guid: Some("f24e3dc4-fb3c-48aa-9360-fc9ee26d1464"),
                database_creation_date: "2018-12-21T11:23:45",
                backup_start_date: "2018-12-21T11:26:31",
                backup_finish_date: Some("2018-12-21T11:26:31"),
                backup_size: Some(470016),
                head_copy_size: 400896,
                has_checksums: false,
                files: &[(1, "D", "doublediff", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\doublediff.mdf"), (2, "L", "doublediff_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\doublediff_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_full_difftest.bak",
        compressed: false,
        block_size: 512,
        media_date: "2018-12-21T11:26:31",
        media_set_id: "cc3be5d2-01f5-4ecb-88f2-0d974445ecba",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "doublediff",
                server_name: "WIN-JNMR8KM0U3B\\SQL2008R2SP2",
                machine_name: "WIN-JNMR8KM0U3B",
                user_name: "WIN-JNMR8KM0U3B\\Administrator",
                backup_name: "",
                software_version: "10.50.1600",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 0,
                first_lsn: "24000000006800099",
                last_lsn: "24000000010900001",
                checkpoint_lsn: "24000000006800099",
                database_backup_lsn: "0",
                backup_set_guid: "f24e3dc4-fb3c-48aa-9360-fc9ee26d1464",
                family_guid: "4a416c85-d28e-4f91-ade2-8276ceae8725",
                recovery_fork_id: "4a416c85-d28e-4f91-ade2-8276ceae8725",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2018-12-21T11:23:45",
                backup_start_date: "2018-12-21T11:26:31",
                backup_finish_date: Some("2018-12-21T11:26:31"),
                backup_size: Some(1584128),
                head_copy_size: 1528320,
                has_checksums: false,
                files: &[(1, "D", "doublediff", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\doublediff.mdf"), (2, "L", "doublediff_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\doublediff_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_full_mediapassword_passwd.bak",
        compressed: false,
        block_size: 512,
        media_date: "2020-10-03T15:34:48",
        media_set_id: "e931699e-20d7-4d24-9054-8e46bbd14986",
        family_count: 1,
        family_sequence: 1,
        password_protected: true,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "stripetest",
                server_name: "JUMPBOX\\SQL2008R2",
                machine_name: "JUMPBOX",
                user_name: "ADS\\COM3MOORESM",
                backup_name: "",
                software_version: "10.50.4000",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 4,
                first_lsn: "20000000033800037",
                last_lsn: "20000000035400001",
                checkpoint_lsn: "20000000033800037",
                database_backup_lsn: "20000000018800043",
                backup_set_guid: "32bedee6-5311-4f5c-9a45-5f3cf7633b2e",
                family_guid: "feb32f6f-4bc1-4180-b359-2e40e3fc5788",
                recovery_fork_id: "5df21dbd-0334-4219-bc90-c6d37fa86dd1",
                fork_point_lsn: "20000000024300001",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2020-05-12T13:45:17",
                backup_start_date: "2020-10-03T15:34:48",
                backup_finish_date: Some("2020-10-03T15:34:48"),
                backup_size: Some(1585152),
                head_copy_size: 1515520,
                has_checksums: false,
                files: &[(1, "D", "restoretimestripe", "c:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2\\MSSQL\\DATA\\StripeTestrestoretimestripe.mdf"), (2, "L", "restoretimestripe_log", "c:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2\\MSSQL\\DATA\\StripeTestrestoretimestripe_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_full_singlerestore.bak",
        compressed: false,
        block_size: 512,
        media_date: "2017-05-18T13:51:14",
        media_set_id: "589be3fa-a74b-437d-8d98-3e56bac0d87d",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "singlerestore",
                server_name: "SQL2008",
                machine_name: "SQL2008",
                user_name: "BASE\\ctrlb",
                backup_name: "singlerestore-Full Database Backup",
                software_version: "10.50.1600",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 8,
                first_lsn: "25000000005700064",
                last_lsn: "25000000008300001",
                checkpoint_lsn: "25000000005700064",
                database_backup_lsn: "0",
                backup_set_guid: "e74e4686-9a28-4021-b630-0be330d820b3",
                family_guid: "9f76f389-c8e3-4da7-9e11-340c2ab664eb",
                recovery_fork_id: "9f76f389-c8e3-4da7-9e11-340c2ab664eb",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2017-05-18T13:50:49",
                backup_start_date: "2017-05-18T13:51:14",
                backup_finish_date: Some("2017-05-18T13:51:14"),
                backup_size: Some(1455104),
                head_copy_size: 1389568,
                has_checksums: false,
                files: &[(1, "D", "singlerestore", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.MSSQLSERVER\\MSSQL\\DATA\\singlerestore.mdf"), (2, "L", "singlerestore_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.MSSQLSERVER\\MSSQL\\DATA\\singlerestore_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_full_stripe1of2_RestoreTimeStripe.bak",
        compressed: false,
        block_size: 512,
        media_date: "2017-12-15T12:46:53",
        media_set_id: "dba99816-9a6c-4ab6-b68c-76b2a726823d",
        family_count: 2,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "RestoreTimeStripe",
                server_name: "CGE100LAP-42\\SQL2008R2SP2",
                machine_name: "CGE100LAP-42",
                user_name: "ADS\\COM3MOORESM",
                backup_name: "",
                software_version: "10.50.4042",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 0,
                first_lsn: "20000000007400170",
                last_lsn: "20000000014400001",
                checkpoint_lsn: "20000000007400170",
                database_backup_lsn: "0",
                backup_set_guid: "54a4e82d-bd4b-4887-885b-3ae8459d489d",
                family_guid: "feb32f6f-4bc1-4180-b359-2e40e3fc5788",
                recovery_fork_id: "feb32f6f-4bc1-4180-b359-2e40e3fc5788",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2017-12-15T12:46:53",
                backup_start_date: "2017-12-15T12:46:53",
                backup_finish_date: Some("2017-12-15T12:46:53"),
                backup_size: Some(1661952),
                head_copy_size: 1543168,
                has_checksums: false,
                files: &[(1, "D", "restoretimestripe", "c:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\restoretimestripe.mdf"), (2, "L", "restoretimestripe_log", "c:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\restoretimestripe_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak",
        compressed: false,
        block_size: 512,
        media_date: "2017-12-15T12:46:53",
        media_set_id: "dba99816-9a6c-4ab6-b68c-76b2a726823d",
        family_count: 2,
        family_sequence: 2,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "RestoreTimeStripe",
                server_name: "CGE100LAP-42\\SQL2008R2SP2",
                machine_name: "CGE100LAP-42",
                user_name: "ADS\\COM3MOORESM",
                backup_name: "",
                software_version: "10.50.4042",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 0,
                first_lsn: "20000000007400170",
                last_lsn: "20000000014400001",
                checkpoint_lsn: "20000000007400170",
                database_backup_lsn: "0",
                backup_set_guid: "54a4e82d-bd4b-4887-885b-3ae8459d489d",
                family_guid: "feb32f6f-4bc1-4180-b359-2e40e3fc5788",
                recovery_fork_id: "feb32f6f-4bc1-4180-b359-2e40e3fc5788",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2017-12-15T12:46:53",
                backup_start_date: "2017-12-15T12:46:53",
                backup_finish_date: Some("2017-12-15T12:46:53"),
                backup_size: Some(1661952),
                head_copy_size: 1543168,
                has_checksums: false,
                files: &[(1, "D", "restoretimestripe", "c:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\restoretimestripe.mdf"), (2, "L", "restoretimestripe_log", "c:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.SQL2008R2SP2\\MSSQL\\DATA\\restoretimestripe_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2008r2_log_checksum_ft1.trn",
        compressed: false,
        block_size: 512,
        media_date: "2017-05-18T04:18:31",
        media_set_id: "795bc831-0631-4753-9b02-7167b5a34bbb",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "L",
                database_name: "ft1",
                server_name: "SQL2008",
                machine_name: "SQL2008",
                user_name: "BASE\\sqlserver",
                backup_name: "",
                software_version: "10.50.1600",
                database_version: 661,
                compatibility_level: 100,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 8,
                first_lsn: "25000000005900074",
                last_lsn: "25000000015600001",
                checkpoint_lsn: "25000000015400001",
                database_backup_lsn: "25000000011600037",
                backup_set_guid: "01a2f590-ebc2-416a-a2ac-52cb9d33f8a6",
                family_guid: "d5a3c3f2-df16-4057-b395-8734e54a0e3d",
                recovery_fork_id: "d5a3c3f2-df16-4057-b395-8734e54a0e3d",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2017-05-08T17:19:10",
                backup_start_date: "2017-05-18T04:18:31",
                backup_finish_date: Some("2017-05-18T04:18:31"),
                backup_size: Some(76800),
                head_copy_size: 49664,
                has_checksums: true,
                files: &[(1, "D", "ft1", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.MSSQLSERVER\\MSSQL\\DATA\\ft1.mdf"), (2, "L", "ft1_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL10_50.MSSQLSERVER\\MSSQL\\DATA\\ft1_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2012rtm_full_winCollation_pubs.bak",
        compressed: false,
        block_size: 4096,
        media_date: "2024-05-05T19:15:01",
        media_set_id: "dc935659-6efb-4f7b-94e5-c518fb9d9ad1",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "pubs",
                server_name: "DESKTOP-7789AN9\\SQLEXPRESS",
                machine_name: "DESKTOP-7789AN9",
                user_name: "DESKTOP-7789AN9\\Uriel",
                backup_name: "pubs-Full Database Backup",
                software_version: "11.0.2100",
                database_version: 706,
                compatibility_level: 110,
                sort_order: 0,
                unicode_locale_id: 3082,
                unicode_comparison_style: 196609,
                time_zone: -24,
                first_lsn: "134000000042400111",
                last_lsn: "134000000048800001",
                checkpoint_lsn: "134000000042400111",
                database_backup_lsn: "133000000034400037",
                backup_set_guid: "cef16b86-3121-4c04-9fc5-21f8b3b167a5",
                family_guid: "730796fe-b5c3-42a0-9f50-c09b0536b132",
                recovery_fork_id: "730796fe-b5c3-42a0-9f50-c09b0536b132",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2024-02-18T19:45:47",
                backup_start_date: "2024-05-05T19:15:01",
                backup_finish_date: Some("2024-05-05T19:15:01"),
                backup_size: Some(3297280),
                head_copy_size: 3244032,
                has_checksums: false,
                files: &[(1, "D", "pubs", "C:\\Program Files\\Microsoft SQL Server\\MSSQL11.UGRSQL\\MSSQL\\DATA\\pubs.mdf"), (2, "L", "pubs_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL11.UGRSQL\\MSSQL\\DATA\\pubs_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2012sp3_full_4kblock_pubs.bak",
        compressed: false,
        block_size: 4096,
        media_date: "2026-04-27T10:29:52",
        media_set_id: "de7e3ec7-09aa-4a74-9336-15a6d38af7e5",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "pubs",
                server_name: "DESKTOP-7LEAC57",
                machine_name: "DESKTOP-7LEAC57",
                user_name: "DESKTOP-7LEAC57\\user",
                backup_name: "pubs-Full Database Backup",
                software_version: "11.0.6020",
                database_version: 706,
                compatibility_level: 110,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 24,
                first_lsn: "191000000046400037",
                last_lsn: "192000000001600001",
                checkpoint_lsn: "191000000046400037",
                database_backup_lsn: "191000000028800037",
                backup_set_guid: "5644b34a-3109-4c2f-86d1-9b70cf194266",
                family_guid: "352c042b-cc1d-4c2d-b38e-02e7f674ebfb",
                recovery_fork_id: "352c042b-cc1d-4c2d-b38e-02e7f674ebfb",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2023-08-08T13:45:44",
                backup_start_date: "2026-04-27T10:29:52",
                backup_finish_date: Some("2026-04-27T10:29:52"),
                backup_size: Some(3230720),
                head_copy_size: 3162112,
                has_checksums: false,
                files: &[(1, "D", "pubs", "C:\\Program Files (x86)\\Microsoft SQL Server\\MSSQL11.MSSQLSERVER\\MSSQL\\DATA\\pubs.mdf"), (2, "L", "pubs_log", "C:\\Program Files (x86)\\Microsoft SQL Server\\MSSQL11.MSSQLSERVER\\MSSQL\\DATA\\pubs_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2014_compressed_full_1set_SharePoint_Config.bak",
        compressed: true,
        block_size: 512,
        media_date: "2018-10-06T20:53:23",
        media_set_id: "2a9e4892-8b33-4f20-b6f5-5be45d69907b",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "SharePoint_Config",
                server_name: "SQLCLUSTER",
                machine_name: "SQLCLUSTER",
                user_name: "BASE\\ctrlb",
                backup_name: "SharePoint_Config-Full Database Backup",
                software_version: "12.0.4100",
                database_version: 782,
                compatibility_level: 120,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 1,
                time_zone: 8,
                first_lsn: "12863000000005200061",
                last_lsn: "12863000000007800001",
                checkpoint_lsn: "12863000000005200061",
                database_backup_lsn: "12862000000019800061",
                backup_set_guid: "67885baf-4ed8-4fce-821a-14a40a9d7441",
                family_guid: "0b66403e-7b62-4f6e-95e2-64de866374b2",
                recovery_fork_id: "0b66403e-7b62-4f6e-95e2-64de866374b2",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2018-07-05T20:20:54",
                backup_start_date: "2018-10-06T20:53:23",
                backup_finish_date: None,
                backup_size: None,
                head_copy_size: 14300160,
                has_checksums: false,
                files: &[(1, "D", "SharePoint_Config", "M:\\MSSQL12.MSSQLSERVER\\MSSQL\\DATA\\SharePoint_Config.mdf"), (2, "L", "SharePoint_Config_log", "L:\\MSSQL12.MSSQLSERVER\\MSSQL\\Data\\SharePoint_Config_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2014_compressed_full_2sets_SharePoint_Config.bak",
        compressed: true,
        block_size: 512,
        media_date: "2018-10-06T23:16:42",
        media_set_id: "0eecb54a-b61e-4bbd-8e2d-ad0eb48abae6",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 2,
        last_eset_number: 2,
        set_map_entries: 2,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "SharePoint_Config",
                server_name: "SQLCLUSTER",
                machine_name: "SQLCLUSTER",
                user_name: "BASE\\ctrlb",
                backup_name: "",
                software_version: "12.0.4100",
                database_version: 782,
                compatibility_level: 120,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 1,
                time_zone: 8,
                first_lsn: "12881000000101900061",
                last_lsn: "12881000000104500001",
                checkpoint_lsn: "12881000000101900061",
                database_backup_lsn: "12881000000087600085",
                backup_set_guid: "f19f3548-0e2b-41cc-a473-3a4b9e17a8e8",
                family_guid: "0b66403e-7b62-4f6e-95e2-64de866374b2",
                recovery_fork_id: "0b66403e-7b62-4f6e-95e2-64de866374b2",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2018-07-05T20:20:54",
                backup_start_date: "2018-10-06T23:16:42",
                backup_finish_date: None,
                backup_size: None,
                head_copy_size: 14300160,
                has_checksums: false,
                files: &[(1, "D", "SharePoint_Config", "M:\\MSSQL12.MSSQLSERVER\\MSSQL\\DATA\\SharePoint_Config.mdf"), (2, "L", "SharePoint_Config_log", "L:\\MSSQL12.MSSQLSERVER\\MSSQL\\Data\\SharePoint_Config_log.ldf")],
            },
            Set {
                position: 2,
                backup_type: "D",
                database_name: "SharePoint_Config",
                server_name: "SQLCLUSTER",
                machine_name: "SQLCLUSTER",
                user_name: "BASE\\ctrlb",
                backup_name: "",
                software_version: "12.0.4100",
                database_version: 782,
                compatibility_level: 120,
                sort_order: 0,
                unicode_locale_id: 1033,
                unicode_comparison_style: 1,
                time_zone: 8,
                first_lsn: "12881000000105500037",
                last_lsn: "12881000000107200001",
                checkpoint_lsn: "12881000000105500037",
                database_backup_lsn: "12881000000101900061",
                backup_set_guid: "82d28802-f4e0-4de5-9752-32058f603aae",
                family_guid: "0b66403e-7b62-4f6e-95e2-64de866374b2",
                recovery_fork_id: "0b66403e-7b62-4f6e-95e2-64de866374b2",
                fork_point_lsn: "0",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2018-07-05T20:20:54",
                backup_start_date: "2018-10-06T23:16:47",
                backup_finish_date: None,
                backup_size: None,
                head_copy_size: 14295552,
                has_checksums: false,
                files: &[(1, "D", "SharePoint_Config", "M:\\MSSQL12.MSSQLSERVER\\MSSQL\\DATA\\SharePoint_Config.mdf"), (2, "L", "SharePoint_Config_log", "L:\\MSSQL12.MSSQLSERVER\\MSSQL\\Data\\SharePoint_Config_log.ldf")],
            },
        ],
    },
    Fixture {
        file: "sql2016_diff_RestoreTimeClean2.bak",
        compressed: false,
        block_size: 512,
        media_date: "2019-05-02T21:15:56",
        media_set_id: "9cadeb64-a112-406f-bae9-146fff128a9b",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "I",
                database_name: "RestoreTimeClean",
                server_name: "WIN-JNMR8KM0U3B\\SQL2016",
                machine_name: "WIN-JNMR8KM0U3B",
                user_name: "WIN-JNMR8KM0U3B\\Administrator",
                backup_name: "",
                software_version: "13.0.5081",
                database_version: 852,
                compatibility_level: 100,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 4,
                first_lsn: "39000000059500001",
                last_lsn: "39000000059800001",
                checkpoint_lsn: "39000000059500001",
                database_backup_lsn: "39000000048800071",
                backup_set_guid: "a62c00af-c30b-41e9-b2cd-ed06e068ede7",
                family_guid: "e4b9b1b7-255c-4866-af1f-eb4a29e8c2c9",
                recovery_fork_id: "6d3a541d-31c4-4207-975e-917419133822",
                fork_point_lsn: "25000000015300001",
                differential_base_lsn: Some("39000000048800071"),
                differential_base_guid: Some("c6c44151-8a2c-4c6c-9bf5-2e02090c8ebc"),
                database_creation_date: "2019-05-02T19:20:02",
                backup_start_date: "2019-05-02T21:15:56",
                backup_finish_date: Some("2019-05-02T21:15:56"),
                backup_size: Some(749568),
                head_copy_size: 656896,
                has_checksums: false,
                files: &[(1, "D", "RestoreTimeClean", "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.SQL2016\\MSSQL\\DATA\\RestoreTimeClean.mdf"), (2, "L", "RestoreTimeClean_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.SQL2016\\MSSQL\\DATA\\RestoreTimeClean_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2016_full_RestoreTimeClean.bak",
        compressed: false,
        block_size: 512,
        media_date: "2019-05-02T21:00:55",
        media_set_id: "c084c051-6551-4ed6-91ed-137f455fb04f",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "D",
                database_name: "RestoreTimeClean",
                server_name: "WIN-JNMR8KM0U3B\\SQL2016",
                machine_name: "WIN-JNMR8KM0U3B",
                user_name: "WIN-JNMR8KM0U3B\\Administrator",
                backup_name: "",
                software_version: "13.0.5081",
                database_version: 852,
                compatibility_level: 100,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 4,
                first_lsn: "39000000048800071",
                last_lsn: "39000000051800001",
                checkpoint_lsn: "39000000048800071",
                database_backup_lsn: "39000000035400071",
                backup_set_guid: "c6c44151-8a2c-4c6c-9bf5-2e02090c8ebc",
                family_guid: "e4b9b1b7-255c-4866-af1f-eb4a29e8c2c9",
                recovery_fork_id: "6d3a541d-31c4-4207-975e-917419133822",
                fork_point_lsn: "25000000015300001",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2019-05-02T19:20:02",
                backup_start_date: "2019-05-02T21:00:55",
                backup_finish_date: Some("2019-05-02T21:00:55"),
                backup_size: Some(2519040),
                head_copy_size: 2440192,
                has_checksums: false,
                files: &[(1, "D", "RestoreTimeClean", "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.SQL2016\\MSSQL\\DATA\\RestoreTimeClean.mdf"), (2, "L", "RestoreTimeClean_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.SQL2016\\MSSQL\\DATA\\RestoreTimeClean_log.LDF")],
            },
        ],
    },
    Fixture {
        file: "sql2016_log_RestoreTimeClean_1.trn",
        compressed: false,
        block_size: 512,
        media_date: "2019-05-02T21:05:55",
        media_set_id: "23ae45ad-20e5-4a93-9979-6395495766ab",
        family_count: 1,
        family_sequence: 1,
        password_protected: false,
        sets_found: 1,
        last_eset_number: 1,
        set_map_entries: 1,
        sets: &[
            Set {
                position: 1,
                backup_type: "L",
                database_name: "RestoreTimeClean",
                server_name: "WIN-JNMR8KM0U3B\\SQL2016",
                machine_name: "WIN-JNMR8KM0U3B",
                user_name: "WIN-JNMR8KM0U3B\\Administrator",
                backup_name: "",
                software_version: "13.0.5081",
                database_version: 852,
                compatibility_level: 100,
                sort_order: 52,
                unicode_locale_id: 1033,
                unicode_comparison_style: 196609,
                time_zone: 4,
                first_lsn: "39000000047400001",
                last_lsn: "39000000054100001",
                checkpoint_lsn: "39000000048800071",
                database_backup_lsn: "39000000048800071",
                backup_set_guid: "eff03344-1bc7-43a9-aa21-7ba2cf1460a5",
                family_guid: "e4b9b1b7-255c-4866-af1f-eb4a29e8c2c9",
                recovery_fork_id: "6d3a541d-31c4-4207-975e-917419133822",
                fork_point_lsn: "25000000015300001",
                differential_base_lsn: None,
                differential_base_guid: None,
                database_creation_date: "2019-05-02T19:20:02",
                backup_start_date: "2019-05-02T21:05:55",
                backup_finish_date: Some("2019-05-02T21:05:55"),
                backup_size: Some(92160),
                head_copy_size: 34304,
                has_checksums: false,
                files: &[(1, "D", "RestoreTimeClean", "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.SQL2016\\MSSQL\\DATA\\RestoreTimeClean.mdf"), (2, "L", "RestoreTimeClean_log", "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.SQL2016\\MSSQL\\DATA\\RestoreTimeClean_log.LDF")],
            },
        ],
    },
];

/// MANIFEST.md, "the rest of the SQL Server 2016 RestoreTimeClean chain":
/// (file, BackupType, FirstLSN, LastLSN, CheckpointLSN, DatabaseBackupLSN, BackupSetGUID).
const CHAIN: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "sql2016_log_RestoreTimeClean_2.trn",
        "L",
        "39000000054100001",
        "39000000057100001",
        "39000000054300002",
        "39000000048800071",
        "91976161-1fe2-4bc1-8a7b-5a815413b711",
    ),
    (
        "sql2016_log_RestoreTimeClean_3.trn",
        "L",
        "39000000057100001",
        "39000000058800001",
        "39000000057300002",
        "39000000048800071",
        "45cd6061-0e07-45a8-87e8-9b003c132035",
    ),
    (
        "sql2016_log_RestoreTimeClean2_1.trn",
        "L",
        "39000000058800001",
        "39000000060800001",
        "39000000059500001",
        "39000000048800071",
        "526e2a7a-3fba-4037-a1e0-9c1879290c6b",
    ),
    (
        "sql2016_log_RestoreTimeClean2_2.trn",
        "L",
        "39000000060800001",
        "39000000062500001",
        "39000000061000002",
        "39000000048800071",
        "17ddebbf-4e56-4c4e-9740-5e314ee665cd",
    ),
    (
        "sql2016_log_RestoreTimeClean2_3.trn",
        "L",
        "39000000062500001",
        "39000000064200001",
        "39000000062700002",
        "39000000048800071",
        "b5d6782d-dd8c-43cd-9f54-65b1a5fdffa1",
    ),
];

/// Every difference between what was parsed and what the manifest says, as readable lines.
fn compare_file(fx: &Fixture, got: &BackupFile, with_tail: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |field: &str, got: String, want: String| {
        if got != want {
            diffs.push(format!(
                "{}: {field}: parsed {got}, manifest {want}",
                fx.file
            ));
        }
    };
    let want_container = if fx.compressed {
        Container::Compressed {
            block_size: fx.block_size,
        }
    } else {
        Container::Mtf {
            block_size: fx.block_size,
        }
    };
    check(
        "container",
        format!("{:?}", got.container),
        format!("{want_container:?}"),
    );
    check(
        "media date",
        got.media
            .media_date
            .map(|d| d.to_string())
            .unwrap_or_default(),
        fx.media_date.to_owned(),
    );
    check(
        "media set id",
        got.media
            .media_set_id
            .map(|g| g.to_string())
            .unwrap_or_default(),
        fx.media_set_id.to_owned(),
    );
    check(
        "family count",
        got.media.family_count.to_string(),
        fx.family_count.to_string(),
    );
    check(
        "family sequence",
        got.media.family_sequence.to_string(),
        fx.family_sequence.to_string(),
    );
    check(
        "password protected",
        got.media.password_protected.to_string(),
        fx.password_protected.to_string(),
    );
    // The manifest's three views of the set count agree with each other.
    assert_eq!(fx.sets_found, fx.last_eset_number, "{}", fx.file);
    assert_eq!(fx.sets_found, fx.set_map_entries, "{}", fx.file);
    let want_count = with_tail.then_some(fx.sets_found);
    check(
        "set count",
        format!("{:?}", got.set_count),
        format!("{want_count:?}"),
    );
    if got.sets.is_empty() || got.sets.len() > fx.sets.len() {
        check(
            "sets read",
            got.sets.len().to_string(),
            fx.sets.len().to_string(),
        );
    }
    for (set, want) in got.sets.iter().zip(fx.sets) {
        compare_set(fx, set, want, with_tail, &mut check);
    }
    diffs
}

fn compare_set(
    fx: &Fixture,
    s: &BackupSet,
    w: &Set,
    with_tail: bool,
    check: &mut impl FnMut(&str, String, String),
) {
    let p = |f: &str| format!("position {} {f}", w.position);
    check(
        &p("position"),
        s.position.to_string(),
        w.position.to_string(),
    );
    check(
        &p("BackupType"),
        s.backup_type.code().to_string(),
        w.backup_type.to_owned(),
    );
    check(
        &p("IsCopyOnly"),
        format!("{:?}", s.copy_only),
        "None".to_owned(),
    );
    check(
        &p("DatabaseName"),
        s.database_name.clone(),
        w.database_name.to_owned(),
    );
    check(
        &p("ServerName"),
        s.server_name.clone(),
        w.server_name.to_owned(),
    );
    check(
        &p("MachineName"),
        s.machine_name.clone(),
        w.machine_name.to_owned(),
    );
    check(&p("UserName"), s.user_name.clone(), w.user_name.to_owned());
    check(
        &p("BackupName"),
        s.backup_name.clone(),
        w.backup_name.to_owned(),
    );
    check(
        &p("SoftwareVersion"),
        s.software_version.to_string(),
        w.software_version.to_owned(),
    );
    check(
        &p("DatabaseVersion"),
        s.database_version.to_string(),
        w.database_version.to_string(),
    );
    check(
        &p("CompatibilityLevel"),
        s.compatibility_level.to_string(),
        w.compatibility_level.to_string(),
    );
    check(
        &p("SortOrder"),
        s.sort_order.to_string(),
        w.sort_order.to_string(),
    );
    check(
        &p("UnicodeLocaleId"),
        s.unicode_locale_id.to_string(),
        w.unicode_locale_id.to_string(),
    );
    check(
        &p("UnicodeComparisonStyle"),
        s.unicode_comparison_style.to_string(),
        w.unicode_comparison_style.to_string(),
    );
    check(
        &p("TimeZone"),
        s.time_zone.to_string(),
        w.time_zone.to_string(),
    );
    check(
        &p("FirstLSN"),
        s.first_lsn.to_string(),
        w.first_lsn.to_owned(),
    );
    check(&p("LastLSN"), s.last_lsn.to_string(), w.last_lsn.to_owned());
    check(
        &p("CheckpointLSN"),
        s.checkpoint_lsn.to_string(),
        w.checkpoint_lsn.to_owned(),
    );
    check(
        &p("DatabaseBackupLSN"),
        s.database_backup_lsn.to_string(),
        w.database_backup_lsn.to_owned(),
    );
    check(
        &p("BackupSetGUID"),
        s.backup_set_guid.to_string(),
        w.backup_set_guid.to_owned(),
    );
    check(
        &p("FamilyGUID"),
        s.family_guid.to_string(),
        w.family_guid.to_owned(),
    );
    check(
        &p("RecoveryForkID"),
        s.recovery_fork_id.to_string(),
        w.recovery_fork_id.to_owned(),
    );
    check(
        &p("ForkPointLSN"),
        s.fork_point_lsn
            .map(|l| l.to_string())
            .unwrap_or_else(|| "0".to_owned()),
        w.fork_point_lsn.to_owned(),
    );
    check(
        &p("DifferentialBaseLSN"),
        format!("{:?}", s.differential_base_lsn.map(|l| l.to_string())),
        format!("{:?}", w.differential_base_lsn),
    );
    check(
        &p("DifferentialBaseGUID"),
        format!("{:?}", s.differential_base_guid.map(|g| g.to_string())),
        format!("{:?}", w.differential_base_guid),
    );
    check(
        &p("DatabaseCreationDate"),
        format!("{:?}", s.database_creation_date.map(|d| d.to_string())),
        format!("{:?}", Some(w.database_creation_date)),
    );
    check(
        &p("BackupStartDate"),
        s.backup_start_date.to_string(),
        w.backup_start_date.to_owned(),
    );
    // The tail holds only the last set's trailer: an earlier set's finish date and size sit
    // mid-file and stay unknown rather than guessed.
    let trailer_in_tail = usize::from(w.position) == fx.sets.len();
    if with_tail && !trailer_in_tail {
        check(
            &p("BackupFinishDate (not the last set)"),
            format!("{:?}", s.backup_finish_date),
            "None".to_owned(),
        );
        check(
            &p("BackupSize (not the last set)"),
            format!("{:?}", s.backup_size),
            "None".to_owned(),
        );
    } else if with_tail {
        match w.backup_finish_date {
            Some(want) => check(
                &p("BackupFinishDate"),
                format!("{:?}", s.backup_finish_date.map(|d| d.to_string())),
                format!("{:?}", Some(want)),
            ),
            None => check(
                &p("BackupFinishDate present"),
                s.backup_finish_date.is_some().to_string(),
                "true".to_owned(),
            ),
        }
        match w.backup_size {
            Some(want) => check(
                &p("BackupSize"),
                format!("{:?}", s.backup_size),
                format!("{:?}", Some(want)),
            ),
            None => check(
                &p("BackupSize present"),
                s.backup_size.is_some().to_string(),
                "true".to_owned(),
            ),
        }
    } else {
        check(
            &p("BackupFinishDate (head only)"),
            format!("{:?}", s.backup_finish_date),
            "None".to_owned(),
        );
        check(
            &p("BackupSize (head only)"),
            format!("{:?}", s.backup_size),
            "None".to_owned(),
        );
    }
    assert_ne!(
        s.backup_size,
        Some(w.head_copy_size),
        "{}: the head copy's partial size leaked",
        fx.file
    );
    check(
        &p("Compressed"),
        s.compressed.to_string(),
        fx.compressed.to_string(),
    );
    check(
        &p("HasBackupChecksums"),
        s.has_checksums.to_string(),
        w.has_checksums.to_string(),
    );
    let files: Vec<String> = s
        .files
        .iter()
        .map(|f| {
            let t = match f.file_type {
                FileType::Data => "D",
                FileType::Log => "L",
            };
            format!(
                "{} {t} {} -> {}",
                f.file_id, f.logical_name, f.physical_name
            )
        })
        .collect();
    let want: Vec<String> = w
        .files
        .iter()
        .map(|(id, t, l, ph)| format!("{id} {t} {l} -> {ph}"))
        .collect();
    check(&p("files"), format!("{files:?}"), format!("{want:?}"));
}

fn uncompressed() -> impl Iterator<Item = &'static Fixture> {
    FIXTURES.iter().filter(|f| !f.compressed)
}

#[test]
fn every_uncompressed_fixture_reads_as_its_manifest_says_from_head_and_tail() {
    let mut diffs = Vec::new();
    let mut n = 0;
    for fx in uncompressed() {
        let data = read(fx.file);
        let got = parse_fixture(&data).unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        assert_eq!(got.sets.len(), fx.sets.len(), "{}", fx.file);
        diffs.extend(compare_file(fx, &got, true));
        n += 1;
    }
    assert_eq!(n, 13, "uncompressed fixtures in the manifest");
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn head_only_parse_leaves_what_only_the_tail_holds_unknown() {
    let mut diffs = Vec::new();
    for fx in uncompressed() {
        let data = read(fx.file);
        // The pipeline's head of a file larger than 1 MiB, or a 64 KiB head of a smaller one:
        // either way the end of the file is not in it.
        let len = if data.len() > HEAD_LIMIT {
            HEAD_LIMIT
        } else {
            64 << 10
        };
        let got = parse(&data[..len], None, data.len() as u64)
            .unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        assert_eq!(got.set_count, None, "{}", fx.file);
        diffs.extend(compare_file(fx, &got, false));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn a_head_that_is_the_whole_file_needs_no_tail() {
    for fx in uncompressed() {
        let data = read(fx.file);
        if data.len() > HEAD_LIMIT {
            continue;
        }
        let alone = parse(&data, None, data.len() as u64);
        assert_eq!(alone, parse_fixture(&data), "{}", fx.file);
        assert!(alone.is_ok_and(|f| f.set_count == Some(1)), "{}", fx.file);
    }
}

#[test]
fn a_short_tail_that_meets_the_head_reads_like_a_full_tail() {
    for fx in uncompressed() {
        let data = read(fx.file);
        if data.len() > HEAD_LIMIT {
            continue;
        }
        // What a caller that never reads a byte twice passes: the head, then only the rest.
        let split = data.len() - 10_000;
        let got = parse(&data[..split], Some(&data[split..]), data.len() as u64);
        assert_eq!(got, parse_fixture(&data), "{}", fx.file);
    }
}

#[test]
fn the_rest_of_the_restore_chain_matches_the_manifest_table() {
    for (file, kind, first, last, checkpoint, base, guid) in CHAIN {
        let data = read(file);
        let got = parse_fixture(&data).unwrap_or_else(|e| panic!("{file}: {e}"));
        let set = &got.sets[0];
        assert_eq!(set.backup_type.code().to_string(), *kind, "{file}");
        assert_eq!(set.first_lsn.to_string(), *first, "{file}");
        assert_eq!(set.last_lsn.to_string(), *last, "{file}");
        assert_eq!(set.checkpoint_lsn.to_string(), *checkpoint, "{file}");
        assert_eq!(set.database_backup_lsn.to_string(), *base, "{file}");
        assert_eq!(set.backup_set_guid.to_string(), *guid, "{file}");
        assert_eq!(got.set_count, Some(1), "{file}");
    }
}

#[test]
fn the_2016_chain_links_full_logs_and_differential_by_lsn_and_guid() {
    let set = |f: &str| parse_fixture(&read(f)).map(|b| b.sets[0].clone());
    let full = set("sql2016_full_RestoreTimeClean.bak").unwrap_or_else(|e| panic!("{e}"));
    let diff = set("sql2016_diff_RestoreTimeClean2.bak").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(diff.differential_base_guid, Some(full.backup_set_guid));
    assert_eq!(diff.differential_base_lsn, Some(full.checkpoint_lsn));
    let logs = [
        "sql2016_log_RestoreTimeClean_1.trn",
        "sql2016_log_RestoreTimeClean_2.trn",
        "sql2016_log_RestoreTimeClean_3.trn",
        "sql2016_log_RestoreTimeClean2_1.trn",
        "sql2016_log_RestoreTimeClean2_2.trn",
        "sql2016_log_RestoreTimeClean2_3.trn",
    ];
    let logs: Vec<BackupSet> = logs
        .iter()
        .map(|f| set(f).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    // The first log covers the full's checkpoint; each later log starts where the previous ended.
    assert!(logs[0].first_lsn <= full.checkpoint_lsn && full.checkpoint_lsn < logs[0].last_lsn);
    for pair in logs.windows(2) {
        assert_eq!(pair[0].last_lsn, pair[1].first_lsn);
    }
    assert!(logs
        .iter()
        .all(|l| l.recovery_fork_id == full.recovery_fork_id));
}

#[test]
fn the_two_stripes_of_one_backup_share_the_set_and_number_their_families() {
    let a = parse_fixture(&read("sql2008r2_full_stripe1of2_RestoreTimeStripe.bak"));
    let b = parse_fixture(&read("sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak"));
    let (a, b) = (
        a.unwrap_or_else(|e| panic!("{e}")),
        b.unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!((a.media.family_count, a.media.family_sequence), (2, 1));
    assert_eq!((b.media.family_count, b.media.family_sequence), (2, 2));
    assert_eq!(a.media.media_set_id, b.media.media_set_id);
    assert_eq!(a.sets[0].backup_set_guid, b.sets[0].backup_set_guid);
}

#[test]
fn collations_are_named_for_sql_and_windows_sort_orders() {
    let sql = parse_fixture(&read("sql2016_full_RestoreTimeClean.bak"));
    let win = parse_fixture(&read("sql2012rtm_full_winCollation_pubs.bak"));
    let name = |r: Result<BackupFile, ParseError>| r.ok().and_then(|f| f.sets[0].collation.clone());
    assert_eq!(name(sql).as_deref(), Some("SQL_Latin1_General_CP1_CI_AS"));
    assert_eq!(name(win).as_deref(), Some("Modern_Spanish_CI_AS"));
}

#[test]
fn json_carries_lsns_as_decimal_strings_and_dates_as_iso_text() {
    let file = parse_fixture(&read("sql2016_log_RestoreTimeClean_1.trn"));
    let json = serde_json::to_value(file.unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let set = &json["sets"][0];
    assert_eq!(set["first_lsn"], "39000000047400001");
    assert_eq!(set["backup_start_date"], "2019-05-02T21:05:55");
    assert_eq!(set["backup_type"], "log");
    assert_eq!(json["container"]["kind"], "mtf");
    assert_eq!(set["software_version"]["build"], 5081);
}

#[test]
fn too_short_heads_ask_for_a_length_that_then_suffices() {
    let mut asked = 0;
    for fx in uncompressed() {
        let data = read(fx.file);
        let total = data.len() as u64;
        let mut lengths: Vec<usize> = vec![0, 1, 3, 4, 7, 51, 52, 53, 200, 511, 512, 1024, 1536];
        lengths.extend((2048..=0x4000).step_by(512));
        lengths.extend([0x3fff, 0x8000, 0xffff]);
        for len in lengths {
            match parse(&data[..len], None, total) {
                Err(ParseError::NeedMoreHead { needed }) => {
                    asked += 1;
                    assert!(
                        needed > len && needed <= HEAD_LIMIT,
                        "{}: {len} -> {needed}",
                        fx.file
                    );
                    let again = parse(&data[..needed], None, total);
                    assert!(again.is_ok(), "{}: {len} -> {needed}: {again:?}", fx.file);
                }
                Ok(_) => {}
                Err(e) => panic!("{}: head of {len} bytes: {e}", fx.file),
            }
        }
    }
    assert!(asked > 100, "only {asked} short heads were tried");
}

#[test]
fn a_truncated_upload_is_reported_as_truncated() {
    let data = read("sql2016_full_RestoreTimeClean.bak");
    let cut = &data[..data.len() - 4096];
    let got = parse(head(cut), Some(tail(cut)), cut.len() as u64);
    assert_eq!(got, Err(ParseError::Truncated));
    let small = read("sql2016_log_RestoreTimeClean_1.trn");
    let cut = &small[..0x1000];
    assert_eq!(
        parse(cut, None, cut.len() as u64),
        Err(ParseError::Truncated)
    );
}

/// Compressed (MSSQLBAK) backups read as MANIFEST.md says, from head and tail.
#[test]
fn compressed_fixtures_read_as_their_manifest_says() {
    let mut diffs = Vec::new();
    for fx in FIXTURES.iter().filter(|f| f.compressed) {
        let data = read(fx.file);
        let got = parse_fixture(&data).unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        // A 1 MiB head holds only the first set of the two-set file; the tail counts both.
        assert_eq!(got.sets[0].position, 1, "{}", fx.file);
        diffs.extend(compare_file(fx, &got, true));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Builds a file of `sets` backup sets from the 2016 log backup: its media header, then per set
/// its SSET/VOLB/MSCI blocks and its MSLS/SFMB/ESET/ESET/SFMB end, numbered 1, 2, ... with the
/// last set map counting them all (the log records themselves are left out: the header reader
/// does not need them).
fn appended_sets(sets: u16) -> Vec<u8> {
    let log = read("sql2016_log_RestoreTimeClean_1.trn");
    assert_eq!(log.len(), 0x18a00, "layout of the log fixture changed");
    let mut chunk = log[0x600..0x1e00].to_vec();
    chunk.extend_from_slice(&log[0x16a00..]);
    let mut file = log[..0x600].to_vec();
    for n in 1..=sets {
        let mut set = chunk.clone();
        // SSET data set number, then the SSET header checksum (XOR of the first 25 words).
        set[62..64].copy_from_slice(&n.to_le_bytes());
        let sum = (0..25).fold(0u16, |acc, i| {
            acc ^ u16::from_le_bytes([set[2 * i], set[2 * i + 1]])
        });
        set[50..52].copy_from_slice(&sum.to_le_bytes());
        for eset in [0x2a00, 0x3200] {
            assert_eq!(&set[eset..eset + 4], b"ESET");
            set[eset + 78..eset + 80].copy_from_slice(&n.to_le_bytes());
        }
        assert_eq!(&set[0x2e00..0x2e04], b"TSMP");
        set[0x2e1a..0x2e1c].copy_from_slice(&n.to_le_bytes());
        file.extend_from_slice(&set);
    }
    file
}

#[test]
fn sets_appended_to_one_file_are_listed_and_counted() {
    let file = appended_sets(2);
    let got = parse(&file, None, file.len() as u64).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.set_count, Some(2));
    let positions: Vec<u16> = got.sets.iter().map(|s| s.position).collect();
    assert_eq!(positions, [1, 2]);
    assert!(got.sets.iter().all(|s| s.backup_finish_date.is_some()));
    // From a head that holds only the first set and a tail that holds the last end-of-set.
    let head = &file[..0x2000];
    let tail = &file[file.len() - 0x1000..];
    let got = parse(head, Some(tail), file.len() as u64).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((got.sets.len(), got.set_count), (1, Some(2)));
}

#[test]
fn a_file_with_more_sets_than_the_limit_is_refused() {
    let file = appended_sets(65);
    assert!(file.len() <= HEAD_LIMIT);
    assert_eq!(
        parse(&file, None, file.len() as u64),
        Err(ParseError::TooManySets {
            found: 65,
            limit: 64
        })
    );
    let fine = appended_sets(64);
    let got = parse(&fine, None, fine.len() as u64).map(|f| (f.sets.len(), f.set_count));
    assert_eq!(got, Ok((64, Some(64))));
}

/// Every fixture's `SCIN` records (head copy and trailer copy): offset of each record's flags.
fn scin_flag_offsets(data: &[u8]) -> Vec<usize> {
    data.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"SCIN")
        .map(|(at, _)| at + 0x08)
        .collect()
}

#[test]
fn no_fixture_is_a_tail_log_backup() {
    // None of the fixtures was taken WITH NORECOVERY / NO_TRUNCATE (MANIFEST: Flags 0x200, 0xa00,
    // 0xa10, 0x210), so none may read as a tail-log backup.
    for fx in FIXTURES {
        let data = read(fx.file);
        let got = parse_fixture(&data).unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        for set in &got.sets {
            assert!(!set.tail_log, "{} set {}", fx.file, set.position);
        }
    }
}

#[test]
fn a_log_backup_with_a_tail_log_flag_reads_as_a_tail_log_backup() {
    // HEADERONLY's Flags: 64 tail log, 128 tail log with incomplete metadata, 256 tail log WITH
    // NORECOVERY. The SCIN flags field is that column (bit 16 is HasBackupChecksums on every
    // fixture), so each of the three bits set on a real log backup must read as a tail log.
    let original = read("sql2016_log_RestoreTimeClean_3.trn");
    let offsets = scin_flag_offsets(&original);
    assert!(
        offsets.len() >= 2,
        "head and trailer SCIN records: {offsets:?}"
    );
    for bit in [0x40u32, 0x80, 0x100] {
        let mut data = original.clone();
        for &at in &offsets {
            let flags = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&(flags | bit).to_le_bytes());
        }
        let got = parse_fixture(&data).unwrap_or_else(|e| panic!("bit {bit:#x}: {e}"));
        assert!(got.sets[0].tail_log, "bit {bit:#x}");
        assert!(
            !got.sets[0].has_checksums,
            "bit {bit:#x} is not the checksum bit"
        );
    }
}

/// MANIFEST.md, the 2019 and 2022 fixtures: `files: FileId 1 type D …; FileId 2 type L …`. The
/// SFIN flags bit that marks the log on the older fixtures is clear on the log of two of these.
#[test]
fn the_2019_and_2022_file_lists_read_as_the_manifest_gives_them() {
    let cases = [
        (
            "sql2019_full_School.bak",
            "School",
            "C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER\\MSSQL\\DATA\\School.mdf",
        ),
        ("sql2022_full_QuanLyBanHang.bak", "QuanLyBanHang", ""),
        ("sql2022_compressed_full_Library.bak", "Library", ""),
    ];
    for (file, logical, physical) in cases {
        let data = read(file);
        let head = &data[..data.len().min(HEAD_LIMIT)];
        let got = parse(head, None, data.len() as u64).unwrap_or_else(|e| panic!("{file}: {e}"));
        let files: Vec<(u32, FileType, &str)> = got.sets[0]
            .files
            .iter()
            .map(|f| (f.file_id, f.file_type, f.logical_name.as_str()))
            .collect();
        let log = format!("{logical}_log");
        assert_eq!(
            files,
            [
                (1, FileType::Data, logical),
                (2, FileType::Log, log.as_str())
            ],
            "{file}"
        );
        if !physical.is_empty() {
            assert_eq!(got.sets[0].files[0].physical_name, physical, "{file}");
        }
    }
}

/// MANIFEST.md's three newer fixtures (SQL Server 2019 and 2022, one of them compressed), whose
/// entries give fewer values than the older ones: every value given, from head and tail.
struct Newer {
    file: &'static str,
    compressed: bool,
    media_date: &'static str,
    backup_type: &'static str,
    database_name: &'static str,
    server_name: &'static str,
    user_name: Option<&'static str>,
    backup_name: &'static str,
    software_version: &'static str,
    database_version: u16,
    compatibility_level: u8,
    sort_order: u8,
    time_zone: i8,
    first_lsn: &'static str,
    last_lsn: &'static str,
    checkpoint_lsn: &'static str,
    database_backup_lsn: &'static str,
    backup_set_guid: &'static str,
    family_guid: &'static str,
    recovery_fork_id: &'static str,
    fork_point_lsn: Option<&'static str>,
    backup_start_date: &'static str,
    /// `None`: MANIFEST did not decode it.
    backup_finish_date: Option<&'static str>,
    backup_size: Option<u64>,
}

const NEWER: &[Newer] = &[
    Newer {
        file: "sql2019_full_School.bak",
        compressed: false,
        media_date: "2024-09-27T15:43:28",
        backup_type: "D",
        database_name: "School",
        server_name: "LAPTOP-Q686IP8P",
        user_name: Some("sa"),
        backup_name: "School-Full Database Backup",
        software_version: "15.0.2120",
        database_version: 904,
        compatibility_level: 150,
        sort_order: 52,
        time_zone: 22,
        first_lsn: "37000000106100037",
        last_lsn: "37000000107800001",
        checkpoint_lsn: "37000000106100037",
        database_backup_lsn: "37000000104700001",
        backup_set_guid: "0e79fb33-f865-4da6-bba8-3cb5efbf20e0",
        family_guid: "0e202d92-2fe2-495e-87e7-ad262c4e5066",
        recovery_fork_id: "0e202d92-2fe2-495e-87e7-ad262c4e5066",
        fork_point_lsn: None,
        backup_start_date: "2024-09-27T15:43:28",
        backup_finish_date: Some("2024-09-27T15:43:28"),
        backup_size: Some(3358720),
    },
    Newer {
        file: "sql2022_full_QuanLyBanHang.bak",
        compressed: false,
        media_date: "2023-04-13T02:54:49",
        backup_type: "D",
        database_name: "QuanLyBanHang",
        server_name: "Admin-PC",
        user_name: None,
        backup_name: "QLBH",
        software_version: "16.0.1050",
        database_version: 957,
        compatibility_level: 100,
        sort_order: 52,
        time_zone: 28,
        first_lsn: "43000000050000037",
        last_lsn: "43000000051700001",
        checkpoint_lsn: "43000000050000037",
        database_backup_lsn: "43000000048600001",
        backup_set_guid: "05b9169e-7f93-4e53-aa27-6eb7c7db8677",
        family_guid: "48573cb6-a7a5-4bdb-b322-1c62ad17e115",
        recovery_fork_id: "d26b7ed3-1cf7-42db-b05b-89f198de168c",
        fork_point_lsn: Some("25000000033300001"),
        backup_start_date: "2023-04-13T02:54:49",
        backup_finish_date: Some("2023-04-13T02:54:49"),
        backup_size: Some(3572736),
    },
    Newer {
        file: "sql2022_compressed_full_Library.bak",
        compressed: true,
        media_date: "2024-11-18T15:42:07",
        backup_type: "D",
        database_name: "Library",
        server_name: "DESKTOP-E6GQPJN",
        user_name: Some("DESKTOP-E6GQPJN\\Codeline User"),
        backup_name: "",
        software_version: "16.0.1000",
        database_version: 957,
        compatibility_level: 160,
        sort_order: 52,
        time_zone: 16,
        first_lsn: "39000000276900011",
        last_lsn: "39000000277600001",
        checkpoint_lsn: "39000000276900011",
        database_backup_lsn: "0",
        backup_set_guid: "c6d75ce2-b6a2-46f0-8357-39b55de80d1c",
        family_guid: "652af29b-3fd4-4bb9-9189-9b449d3015ff",
        recovery_fork_id: "652af29b-3fd4-4bb9-9189-9b449d3015ff",
        fork_point_lsn: None,
        backup_start_date: "2024-11-18T15:42:07",
        backup_finish_date: None,
        backup_size: None,
    },
];

/// Every fixture MANIFEST.md lists is read as it says: the 2019 and 2022 ones (the compressed
/// one included: one backup set, though it decompresses to more than the parser decompresses
/// from a head), from the head and tail the pipeline reads, and from the whole file alone.
#[test]
fn the_2019_and_2022_fixtures_read_as_their_manifest_says() {
    let listed = std::fs::read_to_string(format!("{DIR}MANIFEST.md")).expect("manifest");
    let mut names: Vec<&str> = FIXTURES.iter().map(|f| f.file).collect();
    names.extend(NEWER.iter().map(|f| f.file));
    for line in listed.lines().filter_map(|l| l.strip_prefix("### ")) {
        assert!(names.contains(&line.trim()), "{line} is not checked");
    }
    let mut diffs = Vec::new();
    for fx in NEWER {
        let data = read(fx.file);
        let whole = (data.len() <= HEAD_LIMIT).then(|| parse(&data, None, data.len() as u64));
        let got = parse_fixture(&data).unwrap_or_else(|e| panic!("{}: {e}", fx.file));
        if let Some(whole) = whole {
            assert_eq!(
                whole.as_ref(),
                Ok(&got),
                "{}: the whole file alone",
                fx.file
            );
        }
        let mut check = |field: &str, got: String, want: String| {
            if got != want {
                diffs.push(format!(
                    "{}: {field}: parsed {got}, manifest {want}",
                    fx.file
                ));
            }
        };
        check(
            "set count",
            format!("{:?}", got.set_count),
            "Some(1)".into(),
        );
        check(
            "compressed container",
            matches!(got.container, Container::Compressed { .. }).to_string(),
            fx.compressed.to_string(),
        );
        check(
            "family",
            format!(
                "{} of {}",
                got.media.family_sequence, got.media.family_count
            ),
            "1 of 1".into(),
        );
        check(
            "media date",
            got.media
                .media_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
            fx.media_date.into(),
        );
        let s = &got.sets[0];
        check("sets read", got.sets.len().to_string(), "1".into());
        check(
            "BackupType",
            s.backup_type.code().to_string(),
            fx.backup_type.into(),
        );
        check(
            "DatabaseName",
            s.database_name.clone(),
            fx.database_name.into(),
        );
        check("ServerName", s.server_name.clone(), fx.server_name.into());
        if let Some(user) = fx.user_name {
            check("UserName", s.user_name.clone(), user.into());
        }
        check("BackupName", s.backup_name.clone(), fx.backup_name.into());
        check(
            "SoftwareVersion",
            s.software_version.to_string(),
            fx.software_version.into(),
        );
        check(
            "DatabaseVersion",
            s.database_version.to_string(),
            fx.database_version.to_string(),
        );
        check(
            "CompatibilityLevel",
            s.compatibility_level.to_string(),
            fx.compatibility_level.to_string(),
        );
        check(
            "SortOrder",
            s.sort_order.to_string(),
            fx.sort_order.to_string(),
        );
        check(
            "TimeZone",
            s.time_zone.to_string(),
            fx.time_zone.to_string(),
        );
        check("FirstLSN", s.first_lsn.to_string(), fx.first_lsn.into());
        check("LastLSN", s.last_lsn.to_string(), fx.last_lsn.into());
        check(
            "CheckpointLSN",
            s.checkpoint_lsn.to_string(),
            fx.checkpoint_lsn.into(),
        );
        check(
            "DatabaseBackupLSN",
            s.database_backup_lsn.to_string(),
            fx.database_backup_lsn.into(),
        );
        check(
            "BackupSetGUID",
            s.backup_set_guid.to_string(),
            fx.backup_set_guid.into(),
        );
        check(
            "FamilyGUID",
            s.family_guid.to_string(),
            fx.family_guid.into(),
        );
        check(
            "RecoveryForkID",
            s.recovery_fork_id.to_string(),
            fx.recovery_fork_id.into(),
        );
        check(
            "ForkPointLSN",
            format!("{:?}", s.fork_point_lsn.map(|l| l.to_string())),
            format!("{:?}", fx.fork_point_lsn),
        );
        check(
            "BackupStartDate",
            s.backup_start_date.to_string(),
            fx.backup_start_date.into(),
        );
        if let Some(finish) = fx.backup_finish_date {
            check(
                "BackupFinishDate",
                format!("{:?}", s.backup_finish_date.map(|d| d.to_string())),
                format!("{:?}", Some(finish)),
            );
        }
        if let Some(size) = fx.backup_size {
            check(
                "BackupSize",
                format!("{:?}", s.backup_size),
                format!("{:?}", Some(size)),
            );
        }
        check(
            "Compressed",
            s.compressed.to_string(),
            fx.compressed.to_string(),
        );
        check(
            "HasBackupChecksums",
            s.has_checksums.to_string(),
            "false".into(),
        );
        check("tail log", s.tail_log.to_string(), "false".into());
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
