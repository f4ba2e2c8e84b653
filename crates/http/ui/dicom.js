// DICOM JSON (PS3.18 F.2) for people: keywords of common tags, values as text.

/** Keywords of common attributes (the rest show their tag only). */
export const KEYWORDS = {
  '00020002': 'MediaStorageSOPClassUID', '00020003': 'MediaStorageSOPInstanceUID', '00020010': 'TransferSyntaxUID',
  '00080005': 'SpecificCharacterSet', '00080008': 'ImageType', '00080012': 'InstanceCreationDate', '00080013': 'InstanceCreationTime',
  '00080016': 'SOPClassUID', '00080018': 'SOPInstanceUID', '00080020': 'StudyDate', '00080021': 'SeriesDate',
  '00080022': 'AcquisitionDate', '00080023': 'ContentDate', '00080030': 'StudyTime', '00080031': 'SeriesTime',
  '00080032': 'AcquisitionTime', '00080033': 'ContentTime', '00080050': 'AccessionNumber', '00080060': 'Modality',
  '00080064': 'ConversionType', '00080070': 'Manufacturer', '00080080': 'InstitutionName', '00080081': 'InstitutionAddress',
  '00080090': 'ReferringPhysicianName', '00081010': 'StationName', '00081030': 'StudyDescription',
  '0008103E': 'SeriesDescription', '00081040': 'InstitutionalDepartmentName', '00081050': 'PerformingPhysicianName',
  '00081090': 'ManufacturerModelName', '00081115': 'ReferencedSeriesSequence', '00081140': 'ReferencedImageSequence',
  '00081150': 'ReferencedSOPClassUID', '00081155': 'ReferencedSOPInstanceUID', '00082111': 'DerivationDescription',
  '00100010': 'PatientName', '00100020': 'PatientID', '00100030': 'PatientBirthDate', '00100040': 'PatientSex',
  '00101010': 'PatientAge', '00101020': 'PatientSize', '00101030': 'PatientWeight', '00104000': 'PatientComments',
  '00180015': 'BodyPartExamined', '00180020': 'ScanningSequence', '00180021': 'SequenceVariant', '00180022': 'ScanOptions',
  '00180023': 'MRAcquisitionType', '00180050': 'SliceThickness', '00180060': 'KVP', '00180080': 'RepetitionTime',
  '00180081': 'EchoTime', '00180082': 'InversionTime', '00180087': 'MagneticFieldStrength', '00180088': 'SpacingBetweenSlices',
  '00181020': 'SoftwareVersions', '00181030': 'ProtocolName', '00181088': 'HeartRate', '00181100': 'ReconstructionDiameter',
  '00181110': 'DistanceSourceToDetector', '00181111': 'DistanceSourceToPatient', '00181120': 'GantryDetectorTilt',
  '00181130': 'TableHeight', '00181150': 'ExposureTime', '00181151': 'XRayTubeCurrent', '00181152': 'Exposure',
  '00181210': 'ConvolutionKernel', '00181314': 'FlipAngle', '00185100': 'PatientPosition',
  '0020000D': 'StudyInstanceUID', '0020000E': 'SeriesInstanceUID', '00200010': 'StudyID', '00200011': 'SeriesNumber',
  '00200012': 'AcquisitionNumber', '00200013': 'InstanceNumber', '00200020': 'PatientOrientation',
  '00200032': 'ImagePositionPatient', '00200037': 'ImageOrientationPatient', '00200052': 'FrameOfReferenceUID',
  '00201040': 'PositionReferenceIndicator', '00201041': 'SliceLocation', '00204000': 'ImageComments',
  '00280002': 'SamplesPerPixel', '00280004': 'PhotometricInterpretation', '00280006': 'PlanarConfiguration',
  '00280008': 'NumberOfFrames', '00280010': 'Rows', '00280011': 'Columns', '00280030': 'PixelSpacing',
  '00280100': 'BitsAllocated', '00280101': 'BitsStored', '00280102': 'HighBit', '00280103': 'PixelRepresentation',
  '00281050': 'WindowCenter', '00281051': 'WindowWidth', '00281052': 'RescaleIntercept', '00281053': 'RescaleSlope',
  '00281054': 'RescaleType', '00282110': 'LossyImageCompression',
  '00321060': 'RequestedProcedureDescription', '00400244': 'PerformedProcedureStepStartDate',
  '00400253': 'PerformedProcedureStepID', '00400254': 'PerformedProcedureStepDescription',
  '00620002': 'SegmentSequence', '00620004': 'SegmentNumber', '00620005': 'SegmentLabel', '00620008': 'SegmentAlgorithmType',
  '30060002': 'StructureSetLabel', '30060008': 'StructureSetDate', '30060020': 'StructureSetROISequence',
  '30060026': 'ROIName', '30060039': 'ROIContourSequence',
  '7FE00010': 'PixelData',
};

/** `00100010` as `(0010,0010)`. */
export function formatTag(tag) {
  const t = tag.toUpperCase();
  return `(${t.slice(0, 4)},${t.slice(4)})`;
}

function valueText(element) {
  if (element.Value === undefined) {
    if (element.InlineBinary !== undefined) return `(binary, ${Math.floor(element.InlineBinary.length * 3 / 4)} bytes)`;
    if (element.BulkDataURI !== undefined) return '(bulk data)';
    return '';
  }
  if (element.vr === 'SQ') return `(sequence of ${element.Value.length} item${element.Value.length === 1 ? '' : 's'})`;
  return element.Value.map((v) => {
    if (v === null) return '';
    if (typeof v === 'object') return v.Alphabetic ?? [v.Ideographic, v.Phonetic].filter(Boolean).join('=') ?? JSON.stringify(v);
    return String(v);
  }).join('\\');
}

/**
 * Flattens a DICOM JSON object into rows `{ tag, path, keyword, vr, value, depth }`;
 * items of sequences follow their sequence, one level deeper.
 */
export function flatten(json, prefix = '', depth = 0, out = []) {
  if (!json || typeof json !== 'object') return out;
  for (const tag of Object.keys(json).sort()) {
    const element = json[tag] || {};
    const path = `${prefix}${formatTag(tag)}`;
    out.push({ tag, path, keyword: KEYWORDS[tag.toUpperCase()] || '', vr: element.vr || '', value: valueText(element), depth });
    if (element.vr === 'SQ' && Array.isArray(element.Value) && depth < 8) {
      element.Value.forEach((item, i) => flatten(item, `${path}[${i}] › `, depth + 1, out));
    }
  }
  return out;
}
