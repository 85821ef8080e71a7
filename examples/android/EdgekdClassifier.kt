// Classify a Bitmap on Android with a .tflite model exported by edgekd: through MediaPipe's ImageClassifier (first: the
// few lines most apps need) or through LiteRT's Interpreter (second: raw logits, no MediaPipe). Neither holds a number
// about the model: input size, layout, normalisation and labels come from the metadata inside the file.
// Not compiled by edgekd's tests (there is no Android SDK on its build machine): see README.md in this folder.
package com.example.edgekd

import android.content.Context
import android.graphics.Bitmap
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.imageclassifier.ImageClassifier
import org.json.JSONArray
import org.json.JSONObject
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.abs
import kotlin.math.exp
import kotlin.math.floor
import kotlin.math.sign

const val MODEL = "student-int8.tflite" // in app/src/main/assets/, stored uncompressed (see README.md)

/** 1. MediaPipe: it reads the input size, the normalisation and the labels from the file's standard TFLite metadata. */
class MediaPipeClassifier(context: Context, topK: Int = 3) : AutoCloseable {
    private val classifier = ImageClassifier.createFromOptions(
        context,
        ImageClassifier.ImageClassifierOptions.builder()
            .setBaseOptions(BaseOptions.builder().setModelAssetPath(MODEL).build())
            .setMaxResults(topK)
            .build(),
    )

    /** (label, score) pairs, best first; the score is the model's logit (edgekd models output logits). */
    fun classify(bitmap: Bitmap): List<Pair<String, Float>> =
        classifier.classify(BitmapImageBuilder(bitmap).build()).classificationResult().classifications()[0]
            .categories().map { it.categoryName() to it.score() }

    override fun close() = classifier.close()
}

/** 2. LiteRT Interpreter: preprocessing and labels from the `edgekd` JSON the file carries (see edgekdMetadata). */
class EdgekdClassifier(context: Context, threads: Int = 4) : AutoCloseable {
    private val model = loadModel(context)
    private val meta = edgekdMetadata(model)
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads))
    val labels: List<String> = meta.getJSONArray("labels").strings()
    private val nchw = meta.getString("input_layout") == "NCHW"
    private val shape = meta.getJSONArray("input_shape") // [1, C, H, W] in NCHW terms, whatever the file's layout
    private val channels = shape.getInt(1)
    private val height = shape.getInt(2)
    private val width = shape.getInt(3)
    private val mean = meta.getJSONArray("mean").floats() // per channel, for pixels scaled to [0, 1]
    private val std = meta.getJSONArray("std").floats()

    init {
        val classes = interpreter.getOutputTensor(0).shape().last()
        require(classes == labels.size) { "${labels.size} labels but the model outputs $classes classes" }
    }

    /** The top-k (label, probability) pairs for one image. */
    fun classify(bitmap: Bitmap, topK: Int = 3): List<Pair<String, Float>> {
        val input = interpreter.getInputTensor(0)
        val output = interpreter.getOutputTensor(0)
        val inBuf = ByteBuffer.allocateDirect(input.numBytes()).order(ByteOrder.nativeOrder())
        val qIn = input.quantizationParams()
        for (v in preprocess(bitmap)) {
            if (input.dataType() == DataType.INT8) { // a file exported with int8_io: true takes int8 input
                val s = v / qIn.scale // TFLite rounds half away from zero
                inBuf.put((sign(s) * floor(abs(s) + 0.5f) + qIn.zeroPoint).coerceIn(-128f, 127f).toInt().toByte())
            } else {
                inBuf.putFloat(v)
            }
        }
        inBuf.rewind()
        val outBuf = ByteBuffer.allocateDirect(output.numBytes()).order(ByteOrder.nativeOrder())
        interpreter.run(inBuf, outBuf)
        outBuf.rewind()
        val qOut = output.quantizationParams()
        val logits = FloatArray(labels.size) {
            if (output.dataType() == DataType.INT8) (outBuf.get() - qOut.zeroPoint) * qOut.scale else outBuf.float
        }
        val max = logits.max()
        val e = logits.map { exp(it - max) }
        val sum = e.sum()
        return e.mapIndexed { i, v -> labels[i] to v / sum }.sortedByDescending { it.second }.take(topK)
    }

    /** The training preprocessing: grey (PIL's "L" weights) or RGB, [0, 1], bilinear resize, (x - mean) / std. */
    private fun preprocess(bitmap: Bitmap): FloatArray {
        val scaled = Bitmap.createScaledBitmap(bitmap, width, height, true) // bilinear; see README on shrinking
        val px = IntArray(width * height).also { scaled.getPixels(it, 0, width, 0, 0, width, height) }
        val out = FloatArray(channels * height * width)
        for (i in px.indices) {
            val r = (px[i] shr 16) and 0xFF
            val g = (px[i] shr 8) and 0xFF
            val b = px[i] and 0xFF
            val values = if (channels == 1) intArrayOf((r * 19595 + g * 38470 + b * 7471 + 0x8000) shr 16) else intArrayOf(r, g, b)
            for (c in 0 until channels) {
                out[if (nchw) c * height * width + i else i * channels + c] = (values[c] / 255f - mean[c]) / std[c]
            }
        }
        return out
    }

    override fun close() = interpreter.close()

    private fun loadModel(context: Context): MappedByteBuffer =
        context.assets.openFd(MODEL).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        }
}

/**
 * The JSON edgekd stores in the model's flatbuffer: the `Model.metadata` entry named "edgekd" points at a buffer
 * holding it. Read with plain flatbuffer offsets (TFLite schema: Model.buffers is field 4, Model.metadata field 6;
 * Metadata.name field 0, Metadata.buffer field 1; Buffer.data field 0), so no extra library is needed.
 */
fun edgekdMetadata(model: ByteBuffer): JSONObject {
    val b = model.duplicate().order(ByteOrder.LITTLE_ENDIAN)
    fun deref(pos: Int) = pos + b.getInt(pos) // an offset stored at pos -> the absolute position it points to
    fun field(table: Int, slot: Int): Int { // absolute position of a table field, 0 when absent
        val vtable = table - b.getInt(table)
        val entry = 4 + 2 * slot
        val off = if (entry < (b.getShort(vtable).toInt() and 0xFFFF)) b.getShort(vtable + entry).toInt() and 0xFFFF else 0
        return if (off == 0) 0 else table + off
    }
    fun bytes(vectorField: Int): ByteArray { val v = deref(vectorField); return ByteArray(b.getInt(v)) { b.get(v + 4 + it) } }
    val root = deref(0)
    val metadata = field(root, 6)
    require(metadata != 0) { "$MODEL has no metadata: export it with edgekd" }
    val entries = deref(metadata)
    val buffers = deref(field(root, 4))
    for (i in 0 until b.getInt(entries)) {
        val entry = deref(entries + 4 + 4 * i)
        if (String(bytes(field(entry, 0)), Charsets.UTF_8) != "edgekd") continue
        val index = field(entry, 1).let { if (it == 0) 0 else b.getInt(it) }
        val buffer = deref(buffers + 4 + 4 * index)
        return JSONObject(String(bytes(field(buffer, 0)), Charsets.UTF_8))
    }
    error("$MODEL has no edgekd metadata: export it with edgekd")
}

private fun JSONArray.strings() = List(length()) { getString(it) }

private fun JSONArray.floats() = FloatArray(length()) { getDouble(it).toFloat() }
